//! The upstream HTTP client: the only place that knows reqwest.
//! Timeouts: connect, first byte (response headers), and idle between body
//! reads. Never one total timeout: streams may rightly last minutes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, Method};

use super::idle::IdleTimer;

use crate::config::UpstreamConfig;
use crate::http::error::ApiError;

#[derive(Clone)]
pub struct UpstreamClient {
    client: reqwest::Client,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

pub type UpstreamResponse = reqwest::Response;

pub enum UpstreamBody {
    /// No body at all (a GET).
    Empty,
    /// A body held whole in memory (sent with its length).
    Held(HeldBody),
    Stream(reqwest::Body),
}

/// Why a forward failed before a response arrived.
#[derive(Debug)]
pub enum SendError {
    /// Connection refused, reset, DNS, TLS.
    Unreachable(reqwest::Error),
    /// No response headers within the first-byte timeout.
    TimedOut,
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Unreachable(_) => ApiError::UpstreamUnreachable,
            SendError::TimedOut => ApiError::UpstreamTimeout,
        }
    }
}

impl UpstreamClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // A gateway relays redirects, it does not follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
        })
    }

    /// The response body, failing when the upstream sends nothing for the
    /// idle timeout. (Not reqwest's `read_timeout`: its clock also runs
    /// while a slow client keeps us from reading, and would cut a live
    /// stream for the client's slowness.)
    pub fn body(
        &self,
        response: UpstreamResponse,
    ) -> IdleLimited<impl Stream<Item = reqwest::Result<Bytes>>> {
        IdleLimited {
            inner: response.bytes_stream(),
            timer: IdleTimer::new(self.idle_timeout),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: UpstreamBody,
    ) -> Result<UpstreamResponse, SendError> {
        let request = self.client.request(method, url).headers(headers);
        let request = match body {
            UpstreamBody::Empty => request,
            UpstreamBody::Held(b) => request.body(reqwest::Body::wrap(b)),
            UpstreamBody::Stream(s) => request.body(s),
        };
        match tokio::time::timeout(self.first_byte_timeout, request.send()).await {
            Err(_) => Err(SendError::TimedOut),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_timeout() => Err(SendError::TimedOut),
            // The URL carries the client's query string: keep it out of logs.
            Ok(Err(e)) => Err(SendError::Unreachable(e.without_url())),
        }
    }
}

/// An upstream body with an idle limit. The timer runs only from a read
/// that found nothing until the next read: data waiting because we were
/// slow to ask for it is always delivered first.
pub struct IdleLimited<S> {
    inner: S,
    timer: IdleTimer,
}

impl<S> Stream for IdleLimited<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            self.timer.activity();
            return Poll::Ready(item.map(|r| r.map_err(std::io::Error::other)));
        }
        if !self.timer.expired(cx) {
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the upstream sent nothing within the idle timeout",
        ))))
    }
}

pub fn body_from_stream<S>(stream: S) -> reqwest::Body
where
    S: futures_util::TryStream + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    bytes::Bytes: From<S::Ok>,
{
    reqwest::Body::wrap_stream(stream)
}

/// A body held whole, with its place in the body budget: the place is given
/// back as soon as the client library takes the bytes to send (not when
/// the upstream answers, which may be minutes later).
pub struct HeldBody {
    bytes: Option<Bytes>,
    budget: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
}

impl HeldBody {
    pub fn new(
        bytes: Bytes,
        budget: Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>,
    ) -> Self {
        Self {
            bytes: Some(bytes),
            budget,
        }
    }
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.budget = None;
        Poll::Ready(self.bytes.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Sent with its length (Content-Length), as before it was held.
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}
