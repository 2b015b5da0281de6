//! The upstream HTTP client: hyper's pooled client (HTTP/1.1, and HTTP/2
//! where TLS negotiates it), the only place that knows it. Not reqwest: a
//! gateway needs none of its conveniences (redirects, URL parsing, cookies)
//! and paid for them on every request.
//! Timeouts: connect, first byte (response headers), and idle between body
//! reads. Never one total timeout: streams may rightly last minutes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http::{HeaderMap, Method, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tower::ServiceExt;

use super::idle::IdleTimer;

use crate::config::UpstreamConfig;
use crate::http::error::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body as the client sends it.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<hyper_rustls::HttpsConnector<Connector>, RequestBody>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
}

pub type UpstreamResponse = http::Response<hyper::body::Incoming>;

pub enum UpstreamBody {
    /// No body at all (a GET).
    Empty,
    /// A body held whole in memory (sent with its length).
    Held(HeldBody),
    Stream(RequestBody),
}

impl UpstreamBody {
    fn into_request_body(self) -> RequestBody {
        match self {
            UpstreamBody::Empty => http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
            UpstreamBody::Held(held) => held.map_err(|never| match never {}).boxed_unsync(),
            UpstreamBody::Stream(body) => body,
        }
    }
}

/// Why a forward failed before a response arrived.
#[derive(Debug)]
pub enum SendError {
    /// Connection refused, reset, DNS, TLS; or no URL to reach.
    Unreachable(BoxError),
    /// No response headers within the first-byte timeout (or no connection
    /// within the connect timeout).
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
    pub fn new(config: &UpstreamConfig) -> std::io::Result<Self> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // A pooled connection or a quiet stream that a NAT or load balancer
        // dropped is noticed in under a minute, not at the next timeout.
        http.set_keepalive(Some(Duration::from_secs(15)));
        http.set_keepalive_interval(Some(Duration::from_secs(15)));
        http.set_keepalive_retries(Some(3));
        // The TLS layer above takes https URLs.
        http.enforce_http(false);
        let connector = Connector {
            direct: http,
            proxies: Arc::new(Matcher::from_env()),
            timeout: config.connect_timeout,
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        // Redirects are relayed to the client, never followed (hyper's
        // client does not follow them).
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        Ok(Self {
            client,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
        })
    }

    /// The response body, failing when the upstream sends nothing for the
    /// idle timeout. (Not a read timeout on the socket: its clock would also
    /// run while a slow client keeps us from reading, and would cut a live
    /// stream for the client's slowness.)
    pub fn body(
        &self,
        response: UpstreamResponse,
    ) -> IdleLimited<impl Stream<Item = Result<Bytes, hyper::Error>>> {
        IdleLimited {
            inner: response.into_body().into_data_stream(),
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
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SendError::Unreachable(e.into()))?;
        let mut request = http::Request::new(body.into_request_body());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        match tokio::time::timeout(self.first_byte_timeout, self.client.request(request)).await {
            Err(_) => Err(SendError::TimedOut),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if timed_out(&e) => Err(SendError::TimedOut),
            // The error names no URL (it carries the client's query string).
            Ok(Err(e)) => Err(SendError::Unreachable(e.into())),
        }
    }
}

/// Connects to an upstream: directly, or through the egress proxy the
/// environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`,
/// as reqwest read them) by a CONNECT tunnel; TLS goes on top. The whole
/// connect (DNS, TCP, the proxy's answer) is bounded by the connect timeout.
#[derive(Clone)]
struct Connector {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
    timeout: Duration,
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<TokioIo<tokio::net::TcpStream>, BoxError>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let direct = self.direct.clone();
        let via = self.proxies.intercept(&dst);
        let timeout = self.timeout;
        Box::pin(async move {
            let connect = async move {
                let Some(proxy) = via else {
                    return direct.oneshot(dst).await.map_err(BoxError::from);
                };
                if proxy.uri().scheme_str() != Some("http") {
                    return Err("only http:// egress proxies (CONNECT) are supported, not SOCKS or https://".into());
                }
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                tunnel.oneshot(dst).await.map_err(BoxError::from)
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(connected) => connected,
                Err(_) => {
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout").into())
                }
            }
        })
    }
}

/// The connect timeout, somewhere down the error's causes.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// An upstream body with an idle limit. The timer runs only from a read
/// that found nothing until the next read: data waiting because we were
/// slow to ask for it is always delivered first.
pub struct IdleLimited<S> {
    inner: S,
    timer: IdleTimer,
}

impl<S, E> Stream for IdleLimited<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
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

/// A request body streamed as it arrives (sent chunked, or with the
/// client's Content-Length).
pub fn body_from_stream<S>(stream: S) -> RequestBody
where
    S: futures_util::TryStream + Send + 'static,
    S::Error: Into<BoxError>,
    Bytes: From<S::Ok>,
{
    let frames = stream
        .map_ok(|chunk| http_body::Frame::data(Bytes::from(chunk)))
        .map_err(Into::into);
    http_body_util::StreamBody::new(frames).boxed_unsync()
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
