//! The client's request body, with a limit on how long it may pause: a
//! client that stops sending mid-body (slowloris on the body) would
//! otherwise hold a request slot, and an upstream connection, for as long
//! as the upstream cares to wait.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::idle::IdleTimer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `inner`, failing once the client has sent nothing for `idle` while the
/// gateway waited for it. `fired` says that this was the failure.
pub struct IdleTimeout<B> {
    inner: B,
    timer: IdleTimer,
    fired: Arc<AtomicBool>,
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration, fired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            timer: IdleTimer::new(idle),
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
            self.timer.activity();
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !self.timer.expired(cx) {
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
