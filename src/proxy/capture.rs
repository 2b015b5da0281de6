//! The tee: bodies flow through unchanged while a capped copy is kept for
//! the record. When the response ends (or the client goes away, or the
//! upstream fails) the exchange is finished and its record queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::sync::PollSender;

use super::exchange::{Capture, Exchange};
use crate::domain::Outcome;

/// A request body streamed to the upstream, counted against the size limit
/// and copied aside up to the capture cap.
pub struct RequestTee<S> {
    inner: S,
    capture: Arc<Mutex<Capture>>,
    limit: u64,
    exceeded: Arc<std::sync::atomic::AtomicBool>,
    /// A second reader of the whole body (a file copy). It sets the pace:
    /// while it is full the upload waits; if it goes away the upload goes on.
    side: Option<PollSender<Bytes>>,
    /// A chunk read but not yet handed to `side`.
    held: Option<Bytes>,
    /// Set when the client's body itself failed (malformed chunking, the
    /// client went away): the client's fault, not the upstream's.
    client_failed: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl<S> RequestTee<S> {
    pub fn new(
        inner: S,
        capture: Arc<Mutex<Capture>>,
        limit: usize,
        exceeded: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            inner,
            capture,
            limit: limit as u64,
            exceeded,
            side: None,
            held: None,
            client_failed: None,
        }
    }

    /// Raise `flag` when the client's body fails.
    pub fn with_client_failure_flag(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.client_failed = Some(flag);
        self
    }

    /// Also send every chunk to `side`; the channel closes at the body's end.
    pub fn with_side_channel(mut self, side: tokio::sync::mpsc::Sender<Bytes>) -> Self {
        self.side = Some(PollSender::new(side));
        self
    }

    /// Give `chunk` to the side channel; `Pending` while it is full.
    fn offer_to_side(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let (Some(side), Some(chunk)) = (self.side.as_mut(), self.held.as_ref()) {
            match side.poll_reserve(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {
                    let _ = side.send_item(chunk.clone());
                }
                Poll::Ready(Err(_)) => self.side = None,
            }
        }
        Poll::Ready(())
    }
}

impl<S, E> Stream for RequestTee<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.held.is_none() {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut capture = self.capture.lock().unwrap_or_else(|p| p.into_inner());
                    capture.push(&chunk);
                    let total = capture.total();
                    drop(capture);
                    if total > self.limit {
                        self.exceeded
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        self.side = None;
                        return Poll::Ready(Some(Err("request body exceeds the limit".into())));
                    }
                    if self.side.is_none() {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    self.held = Some(chunk);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.side = None;
                    if let Some(flag) = &self.client_failed {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => {
                    // Closing the side channel tells its reader the body ended.
                    self.side = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        match self.offer_to_side(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(self.held.take().map(Ok)),
        }
    }
}

/// The response body relayed to the client. Chunks pass through as they
/// arrive (no buffering); a copy goes to the capture. Dropping it before the
/// end means the client went away: the upstream stream is dropped with it,
/// which cancels the upstream call, and the record says so.
pub struct ResponseTee<S> {
    inner: S,
    exchange: Option<Exchange>,
    /// The upstream's Content-Length: hyper stops polling once it has sent
    /// that many bytes, so reaching it is the end of the response.
    expected_len: Option<u64>,
    relayed: u64,
    /// The upstream ended (cleanly or not); what was merged goes out first.
    ended: bool,
    /// Chunks read but not yet relayed (see `relay_next`), and their length.
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Turns yielded since the batch last grew.
    idle_turns: u8,
    /// The upstream body failed: once what was relayed before it is out,
    /// the client's response fails too (never a clean end of a cut answer).
    failure: Option<std::io::Error>,
    /// Journal mode: the record is being written to disk, and the end of the
    /// response (`held_end`: the last chunk, or nothing) waits for it.
    journaled: Option<crate::recording::spool::journal::Journaled>,
    held_end: Option<Bytes>,
}

impl<S> ResponseTee<S> {
    pub fn new(inner: S, exchange: Exchange, expected_len: Option<u64>) -> Self {
        Self {
            inner,
            exchange: Some(exchange),
            expected_len,
            relayed: 0,
            ended: false,
            batch: Vec::new(),
            batch_len: 0,
            idle_turns: 0,
            failure: None,
            journaled: None,
            held_end: None,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(exchange) = self.exchange.take() {
            self.journaled = exchange.finish(outcome, Instant::now());
        }
    }
}

/// Turns a batch waits for another chunk before it is sent.
const MAX_IDLE_TURNS: u8 = 2;

/// Chunks are merged up to this size before a write to the client.
const COALESCE_LIMIT: usize = 32 * 1024;

impl<S, E> ResponseTee<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn on_chunk(&mut self, chunk: &[u8]) {
        if let Some(exchange) = self.exchange.as_mut() {
            exchange.response_chunk(chunk);
        }
        self.relayed += chunk.len() as u64;
        if self.expected_len.is_some_and(|len| self.relayed >= len) {
            self.finish(Outcome::Completed);
        }
    }

    fn on_end(&mut self, end: Option<E>) {
        self.ended = true;
        match end {
            None => self.finish(Outcome::Completed),
            Some(e) => {
                tracing::warn!(error = %e, "upstream failed mid-response");
                self.finish(Outcome::UpstreamFailed);
                // hyper then aborts the client's response: no terminating
                // chunk on HTTP/1.1 (or a short sized body and a closed
                // connection), RST_STREAM on HTTP/2.
                self.failure = Some(std::io::Error::other("the upstream response was cut short"));
            }
        }
    }

    /// What follows the last relayed chunk: the failure, if any, or the end.
    fn after_end(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        self.failure.take().map(Err)
    }
}

impl<S, E> Stream for ResponseTee<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(journaled) = self.journaled.as_mut() {
            // Either way (on disk, or handed to the writer) it is settled.
            if Pin::new(journaled).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.journaled = None;
            return Poll::Ready(match self.held_end.take() {
                Some(chunk) => Some(Ok(chunk)),
                None => self.after_end(),
            });
        }
        let next = self.relay_next(cx);
        match next {
            Poll::Ready(Some(Ok(chunk))) if self.journaled.is_some() => {
                self.held_end = Some(chunk);
                self.poll_next(cx)
            }
            Poll::Ready(None) if self.journaled.is_some() => self.poll_next(cx),
            other => other,
        }
    }
}

impl<S, E> ResponseTee<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// The next chunk for the client: what the upstream has ready, merged.
    /// hyper's client hands a body over one frame per turn of its connection
    /// task, and its server writes to the socket whenever the body is not
    /// ready: so while frames keep coming (an SSE burst already read off the
    /// upstream's socket) the merged batch is held and this task yields one
    /// turn, letting the connection task hand over the next. The batch goes
    /// out once `MAX_IDLE_TURNS` turns brought nothing: one write per burst,
    /// not one per event, and no timer (a lone event waits two turns).
    fn relay_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        loop {
            if self.ended {
                return Poll::Ready(match (self.take_batch(), &self.journaled) {
                    (Some(batch), _) => Some(Ok(batch)),
                    // In journal mode the end waits for the record (poll_next).
                    (None, Some(_)) => None,
                    (None, None) => self.after_end(),
                });
            }
            if self.batch_len >= COALESCE_LIMIT {
                return Poll::Ready(self.take_batch().map(Ok));
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.on_chunk(&chunk);
                    self.batch_len += chunk.len();
                    self.batch.push(chunk);
                    self.idle_turns = 0;
                }
                Poll::Ready(end) => self.on_end(end.and_then(Result::err)),
                Poll::Pending if self.batch.is_empty() => return Poll::Pending,
                // Once the exchange is finished (its whole length relayed)
                // nothing more comes: send at once.
                Poll::Pending if self.idle_turns < MAX_IDLE_TURNS && self.exchange.is_some() => {
                    self.idle_turns += 1;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Ready(self.take_batch().map(Ok)),
            }
        }
    }

    /// The chunks held, as one (copied only when there are several).
    fn take_batch(&mut self) -> Option<Bytes> {
        self.batch_len = 0;
        match self.batch.len() {
            0 => None,
            1 => self.batch.pop(),
            _ => {
                let mut merged =
                    bytes::BytesMut::with_capacity(self.batch.iter().map(Bytes::len).sum());
                self.batch
                    .drain(..)
                    .for_each(|chunk| merged.extend_from_slice(&chunk));
                Some(merged.freeze())
            }
        }
    }
}

impl<S> Drop for ResponseTee<S> {
    fn drop(&mut self) {
        self.finish(Outcome::ClientDisconnected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_a_prefix_and_flags_truncation() {
        let mut c = Capture::new(5);
        c.push(b"abc");
        assert!(!c.truncated());
        c.push(b"defg");
        assert_eq!(c.bytes(), b"abcde");
        assert!(c.truncated());
        assert_eq!(c.total(), 7);
    }

    #[test]
    fn zero_cap_keeps_nothing_but_counts() {
        let c = Capture::of(b"secret", 0);
        assert!(c.bytes().is_empty());
        assert_eq!(c.total(), 6);
    }
}
