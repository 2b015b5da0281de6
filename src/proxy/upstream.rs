//! The upstream HTTP client: the only place that knows reqwest.
//! Timeouts: connect, first byte (response headers), and idle between body
//! reads. Never one total timeout: streams may rightly last minutes.

use std::time::Duration;

use http::{HeaderMap, Method};

use crate::config::UpstreamConfig;
use crate::error::ApiError;

#[derive(Clone)]
pub struct UpstreamClient {
    client: reqwest::Client,
    first_byte_timeout: Duration,
}

pub type UpstreamResponse = reqwest::Response;

pub enum UpstreamBody {
    Bytes(bytes::Bytes),
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
            .read_timeout(config.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // A gateway relays redirects, it does not follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            first_byte_timeout: config.first_byte_timeout,
        })
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: UpstreamBody,
    ) -> Result<UpstreamResponse, SendError> {
        let body = match body {
            UpstreamBody::Bytes(b) => reqwest::Body::from(b),
            UpstreamBody::Stream(s) => s,
        };
        let request = self.client.request(method, url).headers(headers).body(body);
        match tokio::time::timeout(self.first_byte_timeout, request.send()).await {
            Err(_) => Err(SendError::TimedOut),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_timeout() => Err(SendError::TimedOut),
            // The URL carries the client's query string: keep it out of logs.
            Ok(Err(e)) => Err(SendError::Unreachable(e.without_url())),
        }
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
