//! The data path: identify the caller, decide the policy, forward upstream
//! with both bodies streamed, relay the response chunk by chunk while a
//! capped copy is taken, and queue one record per exchange.

mod admit;
pub mod auth;
pub mod capture;
pub mod client_body;
pub mod consent;
pub mod exchange;
mod files;
mod forward;
pub mod headers;
mod idle;
pub mod inspect;
pub mod ownership;
mod routing;
pub mod self_service;
pub mod upstream;

use admit::*;
use files::*;
use forward::*;
pub use routing::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http_body_util::BodyExt;

use self::capture::{RequestTee, ResponseTee};
use self::exchange::{Capture, Exchange, ExchangeStart, RequestCapture};
use self::headers::Receipts;
use self::ownership::Ownership;
use self::upstream::{UpstreamBody, UpstreamClient};
use crate::abuse::classifier::Reservation;
use crate::config::{Config, EffectivePolicy, Flavor, Route};
use crate::domain::clock::{truncate_to_micros, Clock};
use crate::domain::{Outcome, RecordId};
use crate::http::error::ApiError;
use crate::objects::copies::{FileCopies, FileTarget, PendingCopy};
use crate::policy::{decide_training_use, TrainingInputs};
use crate::proxy::auth::{ApiKeys, Caller, KeyKind};
use crate::proxy::consent::ConsentCache;
use crate::recording::writer::RecordSink;
use tokio::sync::OwnedSemaphorePermit;

/// A configured route with what the data path needs precomputed.
pub struct RouteRuntime {
    pub route: Route,
    pub name: Arc<str>,
    /// The upstream credential injected for managed keys, if configured.
    pub credential: Option<HeaderValue>,
    /// Tenants' own credentials on this route, by tenant index.
    tenant_credentials: Vec<Option<HeaderValue>>,
}

impl RouteRuntime {
    /// The route at `index` of the configuration, with its credentials.
    pub fn new(config: &Config, index: usize) -> Self {
        let route = config.routes[index].clone();
        let header = |key: &crate::config::Secret| {
            let value = match route.flavor {
                Flavor::Openai => format!("Bearer {}", key.expose()),
                Flavor::Anthropic => key.expose().to_owned(),
            };
            let mut v = HeaderValue::from_str(&value).ok()?;
            v.set_sensitive(true);
            Some(v)
        };
        let credential = route.upstream_key.as_ref().and_then(header);
        let tenant_credentials = config
            .tenants
            .iter()
            .map(|t| {
                t.upstream_keys
                    .get(index)
                    .and_then(Option::as_ref)
                    .and_then(header)
            })
            .collect();
        Self {
            name: Arc::from(route.name.as_str()),
            route,
            credential,
            tenant_credentials,
        }
    }

    /// A tenant's own upstream credential on this route.
    pub fn tenant_credential(&self, tenant_index: usize) -> Option<&HeaderValue> {
        self.tenant_credentials.get(tenant_index)?.as_ref()
    }
}

/// Everything the proxy handler needs; cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    pub config: Arc<Config>,
    pub routes: Arc<[RouteRuntime]>,
    pub api_keys: Arc<ApiKeys>,
    pub consent: Arc<ConsentCache>,
    pub sink: RecordSink,
    pub upstream: UpstreamClient,
    pub clock: Arc<dyn Clock>,
    pub policy_version: HeaderValue,
    pub policy_version_str: Arc<str>,
    pub files: FileCopies,
    pub suspensions: Arc<crate::abuse::suspensions::Suspensions>,
    pub classifier: Option<crate::abuse::classifier::Classifier>,
    /// Seals captured content, when encryption is on.
    pub keys: Option<Arc<crate::crypto::ContentKeys>>,
    /// Places for requests in flight (`server.max_concurrent_requests`).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Requests per tenant per minute, for rate rules.
    pub rates: Arc<crate::abuse::rate::RateCounter>,
    /// The memory and CPU that reading request bodies may take.
    pub limits: inspect::Limits,
    /// The store, for the object registry.
    pub store: Arc<dyn crate::store::Store>,
}

/// The proxy listener's only handler: every path goes through here.
pub async fn handle(State(state): State<ProxyState>, request: Request) -> Response {
    let started = Instant::now();
    let received_at = truncate_to_micros(state.clock.now());
    let (mut parts, body) = request.into_parts();
    let request_id = headers::request_id(&parts.headers);
    let admitted = match admit(&state, &parts, &request_id) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let route = &state.routes[admitted.route_index];
    let flavor = route.route.flavor;
    let tenant = &state.config.tenants[admitted.caller.tenant_index];
    let policy = Arc::clone(&admitted.policy);

    let opt_out = headers::requests_opt_out(&parts.headers);
    headers::strip_gateway_headers(&mut parts.headers);
    let training = state.consent.with_events(&tenant.id, |events| {
        decide_training_use(TrainingInputs {
            zero_data_retention: policy.zero_data_retention,
            request_opt_out: opt_out,
            consent_events: events,
            cutover: policy.training_cutover,
            received_at,
        })
    });

    let record_id = RecordId::new();
    let mut receipts = Receipts::new(
        training,
        &policy,
        state.policy_version.clone(),
        record_id,
        request_id.clone(),
    );
    let start = ExchangeStart {
        id: record_id,
        request_id: request_id.to_str().unwrap_or("").to_owned(),
        tenant: tenant.id.clone(),
        key_id: admitted.caller.key_id.clone(),
        route: Arc::clone(&route.name),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        training,
        policy: Arc::clone(&policy),
        policy_version: Arc::clone(&state.policy_version_str),
        received_at,
        started,
        capture_cap: state.config.capture.max_body_bytes,
        compression_level: state.config.capture.compression_level,
        keys: state.keys.clone(),
        end_user_key: state.config.auth.end_user_key.clone(),
    };
    let exchange = open_exchange(&state, start, &parts, admitted.slot, admitted.classifier);
    let file_op = file_op(
        &state,
        flavor,
        &parts,
        policy.zero_data_retention,
        record_id,
        &tenant.id,
    );
    // After the exchange exists, so a client that leaves while waiting still
    // leaves a record.
    state.sink.wait_for_room().await;
    let incoming = Incoming {
        parts,
        body,
        request_id,
        started,
        file_op,
        record_id,
        policy,
    };
    let forwarded = forward(
        &state,
        route,
        &admitted.caller,
        incoming,
        exchange,
        &mut receipts,
    )
    .await;
    let mut response = match forwarded {
        Ok(response) => response,
        Err((e, exchange)) => {
            if let Some(journaled) = exchange.gateway_error(e.status().as_u16()) {
                let _ = journaled.await;
            }
            e.to_response(flavor)
        }
    };
    receipts.apply(response.headers_mut());
    count_request(&route.name, response.status().as_u16());
    response
}

/// The exchange that will become the record, holding the request's place
/// and, when the classifier will read it, what the body is.
fn open_exchange(
    state: &ProxyState,
    start: ExchangeStart,
    parts: &Parts,
    slot: OwnedSemaphorePermit,
    classifier: Option<Reservation>,
) -> Exchange {
    let mut exchange = Exchange::new(start, state.sink.clone());
    exchange.hold_slot(slot);
    if let Some(classifier) = classifier {
        exchange.classify_with(classifier);
        let values = |name| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        let content_type = values(header::CONTENT_TYPE).pop();
        exchange.request_format(content_type, values(header::CONTENT_ENCODING));
    }
    exchange
}

/// The client's request, as the handler hands it on.
struct Incoming {
    parts: Parts,
    body: Body,
    request_id: HeaderValue,
    started: Instant,
    file_op: FileOp,
    record_id: RecordId,
    policy: Arc<EffectivePolicy>,
}

/// What the request changes as its body is checked.
type Checking<'a> = (
    &'a mut Exchange,
    &'a mut Receipts,
    &'a mut FileOp,
    &'a mut Ownership,
);

type ClientBody = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, axum::Error>>;

type RestOfBody = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// Upstream time to response headers, and what the gateway added around it.
fn record_latency(route: &Arc<str>, started: Instant, sent_at: Instant, headers_at: Instant) {
    let upstream = headers_at.duration_since(sent_at);
    let overhead = started.elapsed().saturating_sub(upstream);
    metrics::histogram!("custodian_upstream_first_byte_seconds", "route" => route.to_string())
        .record(upstream.as_secs_f64());
    metrics::histogram!("custodian_gateway_overhead_seconds", "route" => route.to_string())
        .record(overhead.as_secs_f64());
}

fn count_request(route: &str, status: u16) {
    metrics::counter!(
        "custodian_requests_total",
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
}

/// Answer an error before any exchange exists (no tenant: nothing to record).
fn reject(e: ApiError, flavor: Flavor, request_id: &HeaderValue, route: &str) -> Response {
    let mut response = e.to_response(flavor);
    response
        .headers_mut()
        .insert(headers::REQUEST_ID, request_id.clone());
    count_request(route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_encoded_separators_are_refused() {
        for bad in [
            "/v1/../admin",
            "/v1/./x",
            "/v1/%2e%2e/x",
            "/v1/a%2Fb",
            "/v1/a%5cb",
            "/v1/a\\b",
            "/v1/..",
            "v1/x",
            "/v1/%00",
        ] {
            assert!(!is_safe_path(bad), "{bad}");
        }
        for good in [
            "/v1/chat/completions",
            "/v1/files/file-abc",
            "/anthropic/v1/messages",
            "/v1/a..b",
        ] {
            assert!(is_safe_path(good), "{good}");
        }
    }

    #[test]
    fn micros_truncation_drops_only_sub_microseconds() {
        let t = time::macros::datetime!(2026-01-01 00:00:00.123456789 UTC);
        assert_eq!(
            truncate_to_micros(t),
            time::macros::datetime!(2026-01-01 00:00:00.123456 UTC)
        );
    }
}
