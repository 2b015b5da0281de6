//! The client's request body, with a limit on how long it may pause: a
//! client that stops sending mid-body (slowloris on the body) would
//! otherwise hold a request slot, and an upstream connection, for as long
//! as the upstream cares to wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `inner`, failing once no frame has arrived for `idle` (counted from the
/// start, then from each frame). `fired` says that this was the failure.
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    fired: Arc<AtomicBool>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration, fired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            fired,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            let next = Instant::now() + self.idle;
            self.timer.as_mut().reset(next);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.fired.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(
            "the client paused its request body too long".into()
        )))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
