//! The data path: identify the caller, decide the policy, forward upstream
//! with both bodies streamed, relay the response chunk by chunk while a
//! capped copy is taken, and queue one record per exchange.

pub mod auth;
pub mod capture;
pub mod client_body;
pub mod consent;
pub mod exchange;
pub mod headers;
mod idle;
pub mod inspect;
pub mod ownership;
pub mod self_service;
pub mod upstream;

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
use crate::config::{ClassifierMode, Config, EffectivePolicy, Flavor, Route};
use crate::domain::clock::{truncate_to_micros, Clock};
use crate::domain::{Outcome, RecordId};
use crate::http::error::ApiError;
use crate::objects::copies::{FileCopies, FileTarget, PendingCopy};
use crate::policy::{decide_training_use, TrainingInputs};
use crate::proxy::auth::{Caller, KeyKind, KeyRing};
use crate::proxy::consent::ConsentCache;
use crate::recording::writer::RecordSink;

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
    pub keyring: Arc<KeyRing>,
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

    let route_index = match select_route(&state.routes, parts.uri.path()) {
        Ok(i) => i,
        Err(e) => return reject(e, Flavor::Openai, &request_id, "none"),
    };
    let route = &state.routes[route_index];
    let flavor = route.route.flavor;
    // Shed load early and cheaply: no place, no work.
    let Ok(slot) = Arc::clone(&state.slots).try_acquire_owned() else {
        metrics::counter!("custodian_requests_shed_total").increment(1);
        return reject(ApiError::Overloaded, flavor, &request_id, &route.name);
    };
    let caller = match state.keyring.identify(flavor, &parts.headers) {
        Ok(c) => c,
        Err(crate::proxy::auth::AuthError::MissingKey) => {
            return reject(ApiError::MissingKey, flavor, &request_id, &route.name)
        }
        Err(crate::proxy::auth::AuthError::UnknownKey) => {
            return reject(ApiError::UnknownKey, flavor, &request_id, &route.name)
        }
    };
    let tenant = &state.config.tenants[caller.tenant_index];
    if state
        .suspensions
        .is_suspended(&tenant.id.0, &caller.key_id.0)
    {
        return reject(ApiError::Suspended, flavor, &request_id, &route.name);
    }
    if !state.sink.admits_requests() {
        // fail_closed: no call goes through without a place for its record.
        metrics::counter!("custodian_requests_refused_unrecordable_total").increment(1);
        return reject(ApiError::StoreUnavailable, flavor, &request_id, &route.name);
    }
    let policy = Arc::clone(&tenant.policies[route_index]);
    let classifier = match (policy.classifier, &state.classifier) {
        (ClassifierMode::Off, _) | (_, None) => None,
        (mode, Some(c)) if mode == ClassifierMode::FailOpen || c.healthy() => c.reserve(&tenant.id),
        _ => None,
    };
    if policy.classifier == ClassifierMode::FailClosed && classifier.is_none() {
        metrics::counter!("custodian_classifier_refused_total").increment(1);
        return reject(
            ApiError::ChecksUnavailable,
            flavor,
            &request_id,
            &route.name,
        );
    }

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
    let exchange_policy_zdr = policy.zero_data_retention;
    let mut exchange = Exchange::new(
        ExchangeStart {
            id: record_id,
            request_id: request_id.to_str().unwrap_or("").to_owned(),
            tenant: tenant.id.clone(),
            key_id: caller.key_id.clone(),
            route: Arc::clone(&route.name),
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            training,
            policy: Arc::clone(&policy),
            policy_version: Arc::clone(&state.policy_version_str),
            received_at,
            started,
            capture_cap: state.config.capture.max_body_bytes,
            keys: state.keys.clone(),
        },
        state.sink.clone(),
    );
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
    let file_op = file_op(
        &state,
        flavor,
        &parts,
        exchange_policy_zdr,
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
    let forwarded = forward(&state, route, &caller, incoming, exchange, &mut receipts).await;
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

type ForwardResult = Result<Response, (ApiError, Exchange)>;

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

/// What the gateway does besides relaying, for the files API.
enum FileOp {
    None,
    /// An upload being copied (kept if it is an accepted fine-tune file).
    Upload(PendingCopy),
    /// A delete of this file id: remove our copy once the upstream confirms.
    Delete(String),
}

/// Uploads and deletes of files on OpenAI routes, except for ZDR tenants
/// (whose files are never copied, so there is nothing to delete either).
fn file_op(
    state: &ProxyState,
    flavor: Flavor,
    parts: &Parts,
    zero_data_retention: bool,
    record_id: RecordId,
    tenant: &crate::domain::TenantId,
) -> FileOp {
    if flavor != Flavor::Openai || zero_data_retention {
        return FileOp::None;
    }
    match (
        &parts.method,
        crate::objects::copies::file_target(parts.uri.path()),
    ) {
        (&http::Method::POST, Some(FileTarget::Collection)) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            state
                .files
                .begin(record_id, tenant, content_type)
                .map_or(FileOp::None, FileOp::Upload)
        }
        (&http::Method::DELETE, Some(FileTarget::File(id))) => FileOp::Delete(id.to_owned()),
        _ => FileOp::None,
    }
}

async fn forward(
    state: &ProxyState,
    route: &RouteRuntime,
    caller: &Caller,
    incoming: Incoming,
    mut exchange: Exchange,
    receipts: &mut Receipts,
) -> ForwardResult {
    let Incoming {
        mut parts,
        body,
        request_id,
        started,
        mut file_op,
        record_id,
        policy,
    } = incoming;
    let client_paused = Arc::new(AtomicBool::new(false));
    let body = Body::new(client_body::IdleTimeout::new(
        body,
        state.config.server.client_body_timeout,
        Arc::clone(&client_paused),
    ));
    let limit = state.config.server.max_request_body_bytes;
    let declared_length = content_length(&parts.headers);
    if declared_length.is_some_and(|len| len > limit as u64) {
        return Err((ApiError::PayloadTooLarge { limit }, exchange));
    }
    let url = upstream_url(&route.route, &parts);
    if let Err(e) = prepare_upstream_headers(route, caller, &mut parts.headers, &request_id) {
        return Err((e, exchange));
    }
    let tenant = &state.config.tenants[caller.tenant_index];
    let path = parts.uri.path().to_owned();
    let request = (&parts.method, path.as_str());
    let mut ownership = Ownership::new(route, caller, &tenant.id, request, &policy);
    if let Err(e) = ownership
        .check(state.store.as_ref(), ownership.path_refs())
        .await
    {
        return Err((e, exchange));
    }

    let flags = BodyFlags::default();
    let checked = checked_body(
        state,
        caller,
        &mut parts,
        body,
        &policy,
        (&mut exchange, receipts, &mut file_op, &mut ownership),
        &flags,
    )
    .await;
    let upstream_body = match checked {
        Ok(checked) => checked,
        Err(_) if client_paused.load(Ordering::Relaxed) => {
            return Err((ApiError::ClientTimeout, exchange))
        }
        Err(e) => return Err((e, exchange)),
    };

    let method_was_head = parts.method == http::Method::HEAD;
    // A list cut to the caller's objects reads on through the upstream's
    // pages with the same headers.
    let list_headers = ownership.lists().map(|_| parts.headers.clone());
    let file_source = matches!(file_op, FileOp::Delete(_)).then(|| {
        headers::client_address(
            &parts.extensions,
            &parts.headers,
            &state.config.server.trusted_proxies,
        )
    });
    let sent_at = Instant::now();
    exchange.upstream_sent(sent_at);
    let sent = state
        .upstream
        .send(parts.method, &url, parts.headers, upstream_body)
        .await;
    let response = match sent {
        Ok(r) => r,
        // The client's body failed, not the upstream: 408 or 400, not 502.
        Err(_) if client_paused.load(Ordering::Relaxed) => {
            return Err((ApiError::ClientTimeout, exchange))
        }
        Err(_) if flags.client_failed.load(Ordering::Relaxed) => {
            return Err((ApiError::BadBody, exchange))
        }
        Err(_) if flags.exceeded.load(Ordering::Relaxed) => {
            return Err((ApiError::PayloadTooLarge { limit }, exchange))
        }
        Err(e) => {
            tracing::warn!(route = %route.name, error = ?e, "upstream request failed");
            return Err((e.into(), exchange));
        }
    };
    let headers_at = Instant::now();
    let status = response.status();
    let mut response_headers = response.headers().clone();
    headers::strip_hop_by_hop(&mut response_headers);
    let streamed = is_event_stream(&response_headers);
    exchange.upstream_headers(status.as_u16(), streamed, headers_at);

    let expected_len = content_length(&response_headers);
    // hyper never polls a body that cannot have content; such an exchange is
    // complete as soon as the headers are in.
    let bodiless =
        method_was_head || matches!(status.as_u16(), 204 | 304) || expected_len == Some(0);
    let now = state.clock.now();
    if let Some(id) = ownership.deleted(status.as_u16()) {
        let keep_for =
            time::Duration::try_from(policy.retention.metadata).unwrap_or(time::Duration::MAX);
        ownership
            .mark_deleted(state.store.as_ref(), id, now, keep_for)
            .await;
    }
    let registers = ownership.registers(status.as_u16());
    let body = if bodiless {
        if let Some(journaled) = exchange.finish(Outcome::Completed, headers_at) {
            let _ = journaled.await;
        }
        Body::empty()
    } else if let (Some(headers), true) = (list_headers, status == http::StatusCode::OK) {
        let (first, _) = read_head(state.upstream.body(response), LIST_PAGE_LIMIT).await;
        let page = ownership::owned_page(state, &ownership, first, &url, headers).await;
        let page = match page {
            Ok(page) => page,
            Err(e) => return Err((e, exchange)),
        };
        response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
        let len = Some(page.len() as u64);
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(page)]);
        Body::from_stream(ResponseTee::new(stream, exchange, len))
    } else if matches!(file_op, FileOp::None) && !registers {
        Body::from_stream(ResponseTee::new(
            state.upstream.body(response),
            exchange,
            expected_len,
        ))
    } else {
        // A stream's first event carries the id it creates; a JSON
        // answer is read whole (it is a small object).
        let limit = match streamed {
            true => FIRST_EVENT_LIMIT,
            false => FILES_RESPONSE_LIMIT,
        };
        let (head, rest) = read_head_until(state.upstream.body(response), limit, streamed).await;
        if registers {
            ownership
                .register(state.store.as_ref(), record_id, &head, streamed, now)
                .await;
        }
        let tenant = &state.config.tenants[caller.tenant_index].id;
        let source = file_source.unwrap_or_default();
        finish_file_op(
            state,
            caller,
            source,
            file_op,
            tenant,
            record_id,
            status.as_u16(),
            &head,
        )
        .await;
        let stream = futures_util::stream::iter([Ok(head)]).chain(rest);
        Body::from_stream(ResponseTee::new(stream, exchange, expected_len))
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = response_headers;
    record_latency(&route.name, started, sent_at, headers_at);
    Ok(out)
}

/// Raised by the request tee: the body went past the limit, or the
/// client's body itself failed (so a failed send is theirs, not a 502).
#[derive(Default)]
struct BodyFlags {
    exceeded: Arc<AtomicBool>,
    client_failed: Arc<AtomicBool>,
}

/// How much of a refused body's rest is read (and discarded) so that its
/// client sees the answer; beyond it the connection is closed on it.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

/// What the request changes as its body is checked.
type Checking<'a> = (
    &'a mut Exchange,
    &'a mut Receipts,
    &'a mut FileOp,
    &'a mut Ownership,
);

/// The request body as it goes upstream, once the inline rules have seen
/// what they need of it (a `block` refuses before anything is sent), with
/// its place in the body budget until it is sent.
async fn checked_body(
    state: &ProxyState,
    caller: &Caller,
    parts: &mut Parts,
    body: Body,
    policy: &EffectivePolicy,
    (exchange, receipts, file_op, ownership): Checking<'_>,
    flags: &BodyFlags,
) -> Result<UpstreamBody, ApiError> {
    let config = &state.config;
    let declared_length = content_length(&parts.headers);
    let known_length = declared_length.or_else(|| http_body::Body::size_hint(&body).exact());
    let rate = requests_this_minute(state, caller);
    let names_objects = ownership.reads_body;
    let Some(hold) = inspect::hold_limit(config, known_length, &parts.headers, names_objects)
    else {
        let verdicts = config.rules.check(&crate::policy::rules::CheckInput {
            text: None,
            body_bytes: known_length,
            requests_this_minute: rate,
        });
        apply_verdicts(verdicts, exchange, receipts, policy)?;
        if known_length == Some(0) {
            return Ok(UpstreamBody::Empty);
        }
        let body = StreamExt::boxed(body.into_data_stream());
        return Ok(streamed_body(state, body, exchange, file_op, flags));
    };
    let limit = config.server.max_request_body_bytes;
    let held = inspect::hold(body, hold, limit, &state.limits).await?;
    // Before any verdict: a blocked request keeps what it sent.
    let capture = Capture::of(&held.bytes, config.capture.max_body_bytes);
    exchange.request_body(RequestCapture::Whole(capture));
    let verdicts = inspect::check(
        state,
        &parts.headers,
        held.view(),
        declared_length,
        rate,
        policy,
    );
    let mut checked = verdicts
        .await
        .and_then(|v| apply_verdicts(v, exchange, receipts, policy));
    let mut rewritten = None;
    if checked.is_ok() {
        let zdr = policy.zero_data_retention;
        let whole = (&held.bytes, held.complete());
        checked = ownership::owned_body(state, &mut parts.headers, whole, ownership, zdr)
            .await
            .map(|body| rewritten = body);
    }
    if let Err(e) = checked {
        if let Some(rest) = held.rest {
            inspect::drain(rest, DRAIN_LIMIT, config.server.client_body_timeout).await;
        }
        return Err(e);
    }
    if rewritten.is_some() {
        receipts.upstream_store_off();
    }
    let inspect::Held {
        bytes,
        rest,
        budget,
    } = held;
    let bytes = rewritten.unwrap_or(bytes);
    let Some(rest) = rest else {
        if let FileOp::Upload(copy) = file_op {
            if let Some(side) = copy.take_sender() {
                let _ = side.send(bytes.clone()).await;
            }
        }
        return Ok(UpstreamBody::Held(upstream::HeldBody::new(bytes, budget)));
    };
    // The held start, then the rest as it streams; the start's place in the
    // budget goes once it is on its way.
    let start = futures_util::stream::once(async move {
        drop(budget);
        Ok(bytes)
    });
    let body = StreamExt::boxed(start.chain(rest));
    Ok(streamed_body(state, body, exchange, file_op, flags))
}

/// This tenant's requests in the current minute (for rate rules).
fn requests_this_minute(state: &ProxyState, caller: &Caller) -> u64 {
    if !state.config.rules.counts_requests() {
        return 0;
    }
    let tenant = &state.config.tenants[caller.tenant_index].id;
    state
        .rates
        .hit(&tenant.0, state.clock.now().unix_timestamp())
}

type ClientBody = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, axum::Error>>;

/// A request body streamed to the upstream through the tee: counted
/// against the limit, copied aside for the record (and for a file copy).
fn streamed_body(
    state: &ProxyState,
    body: ClientBody,
    exchange: &mut Exchange,
    file_op: &mut FileOp,
    flags: &BodyFlags,
) -> UpstreamBody {
    let shared = Arc::new(Mutex::new(Capture::new(
        state.config.capture.max_body_bytes,
    )));
    exchange.request_body(RequestCapture::Streamed(Arc::clone(&shared)));
    let mut tee = RequestTee::new(
        body,
        shared,
        state.config.server.max_request_body_bytes,
        Arc::clone(&flags.exceeded),
    )
    .with_client_failure_flag(Arc::clone(&flags.client_failed));
    if let FileOp::Upload(copy) = file_op {
        if let Some(side) = copy.take_sender() {
            tee = tee.with_side_channel(side);
        }
    }
    UpstreamBody::Stream(upstream::body_from_stream(tee))
}

/// Flag the exchange (and say in the receipt what that keeps); a blocking
/// verdict refuses the request.
fn apply_verdicts(
    verdicts: Vec<crate::domain::verdict::Verdict>,
    exchange: &mut Exchange,
    receipts: &mut Receipts,
    policy: &EffectivePolicy,
) -> Result<(), ApiError> {
    let Some((action, severity)) = crate::domain::verdict::strongest(&verdicts) else {
        return Ok(());
    };
    receipts.flagged(policy);
    // Refused only for being unreadable: say so rather than "policy".
    let unreadable_only = verdicts
        .iter()
        .filter(|v| v.action == crate::domain::verdict::RuleAction::Block)
        .all(|v| v.rule == crate::domain::verdict::UNSCANNABLE_RULE);
    let unreadable_reason = verdicts
        .iter()
        .find(|v| v.rule == crate::domain::verdict::UNSCANNABLE_RULE)
        .and_then(|v| v.reason.clone());
    for v in &verdicts {
        metrics::counter!("custodian_rule_matches_total", "rule" => v.rule.clone(), "action" => v.action.as_str())
            .increment(1);
    }
    tracing::info!(rules = ?verdicts.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(), %severity, action = action.as_str(), "request flagged");
    exchange.flag(verdicts);
    match (action, unreadable_reason) {
        (crate::domain::verdict::RuleAction::Block, Some(reason)) if unreadable_only => {
            Err(ApiError::Unscannable(reason))
        }
        (crate::domain::verdict::RuleAction::Block, _) => Err(ApiError::Blocked),
        (crate::domain::verdict::RuleAction::Flag, _) => Ok(()),
    }
}

/// Files API answers are small JSON; more than this is relayed untouched.
const FILES_RESPONSE_LIMIT: usize = 1 << 20;
/// The first event of a stream that creates an object (its id) is within this.
const FIRST_EVENT_LIMIT: usize = 64 * 1024;
/// A list page read whole to be cut to the caller's objects.
const LIST_PAGE_LIMIT: usize = 4 << 20;

type RestOfBody = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// The start of a response body: all of it when it fits in `limit`, or, for
/// an event stream (`first_event`), up to the end of its first event.
async fn read_head_until(
    mut body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
    limit: usize,
    first_event: bool,
) -> (bytes::Bytes, RestOfBody) {
    if !first_event {
        return read_head(body, limit).await;
    }
    let mut head = bytes::BytesMut::new();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                // Events end with a blank line, in LF or CRLF.
                let ended = head.windows(2).any(|w| w == b"\n\n")
                    || head.windows(4).any(|w| w == b"\r\n\r\n");
                if ended || head.len() > limit {
                    return (head.freeze(), body.boxed());
                }
            }
            None => return (head.freeze(), futures_util::stream::empty().boxed()),
            Some(Err(e)) => return (head.freeze(), futures_util::stream::iter([Err(e)]).boxed()),
        }
    }
}

/// The start of a response body (all of it when it fits in `limit`) and the
/// rest as a stream.
async fn read_head(
    mut body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
    limit: usize,
) -> (bytes::Bytes, RestOfBody) {
    let mut head = bytes::BytesMut::new();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                if head.len() > limit {
                    return (head.freeze(), body.boxed());
                }
            }
            None => return (head.freeze(), futures_util::stream::empty().boxed()),
            Some(Err(e)) => return (head.freeze(), futures_util::stream::iter([Err(e)]).boxed()),
        }
    }
}

/// Keep or discard an upload's copy; remove a deleted file's copy.
#[allow(clippy::too_many_arguments)]
async fn finish_file_op(
    state: &ProxyState,
    caller: &Caller,
    source: String,
    file_op: FileOp,
    tenant: &crate::domain::TenantId,
    record: RecordId,
    status: u16,
    body: &[u8],
) {
    match file_op {
        FileOp::None => {}
        FileOp::Upload(copy) => {
            let now = state.clock.now();
            state
                .files
                .complete(copy, tenant, record, status, body, now)
                .await;
        }
        FileOp::Delete(file_id) => {
            let audit = crate::domain::audit::AuditEvent {
                at: state.clock.now(),
                actor: format!("key:{}", caller.key_id),
                action: "file.deleted".into(),
                tenant: Some(tenant.clone()),
                subject: None,
                source,
                details: serde_json::json!({ "file_id": file_id, "record": record.to_string() }),
            };
            if let Err(e) = state
                .files
                .deleted_upstream(tenant, &file_id, status, body, audit)
                .await
            {
                metrics::counter!("custodian_file_copies_failed_total").increment(1);
                tracing::error!(tenant = %tenant, error = %e, "removing a deleted file's copy failed");
            }
        }
    }
}

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

/// Paths the gateway answers itself (e.g. `/custodian/v1/data-sharing`).
pub const GATEWAY_PATH_PREFIX: &str = "/custodian/";

/// The longest route prefix that `path` falls under. Paths that could
/// escape a prefix once decoded or normalised upstream are refused.
pub fn select_route(routes: &[RouteRuntime], path: &str) -> Result<usize, ApiError> {
    if !is_safe_path(path) {
        return Err(ApiError::BadPath);
    }
    // The gateway's own namespace is never forwarded, whatever the routes.
    if path.starts_with(GATEWAY_PATH_PREFIX) {
        return Err(ApiError::NoRoute);
    }
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| path.starts_with(r.route.prefix.as_str()))
        .max_by_key(|(_, r)| r.route.prefix.len())
        .map(|(i, _)| i)
        .ok_or(ApiError::NoRoute)
}

fn is_safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    // Encoded '/', '\\' and '.' could turn into a traversal after decoding.
    if ["%2f", "%5c", "%2e", "%00"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return false;
    }
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The upstream URL: the route's base, the path past the prefix, the query.
fn upstream_url(route: &Route, parts: &Parts) -> String {
    let rest = &parts.uri.path()[route.prefix.len()..];
    let mut url = String::with_capacity(route.upstream.as_str().len() + rest.len() + 64);
    url.push_str(route.upstream.as_str());
    url.push_str(rest);
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn prepare_upstream_headers(
    route: &RouteRuntime,
    caller: &Caller,
    headers: &mut http::HeaderMap,
    request_id: &HeaderValue,
) -> Result<(), ApiError> {
    headers::strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.insert(headers::REQUEST_ID, request_id.clone());
    // Captures must be readable (model, usage, review), so the upstream is
    // asked for identity encoding; the client gets the bytes as sent.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if caller.kind == KeyKind::Managed {
        // The caller's gateway key never leaves the gateway, in either header.
        headers.remove(header::AUTHORIZATION);
        headers.remove("x-api-key");
        let own = route.tenant_credential(caller.tenant_index);
        let Some(credential) = own.or(route.credential.as_ref()).cloned() else {
            return Err(ApiError::MissingUpstreamCredential);
        };
        match route.route.flavor {
            Flavor::Openai => {
                headers.insert(header::AUTHORIZATION, credential);
            }
            Flavor::Anthropic => {
                headers.insert("x-api-key", credential);
            }
        }
    }
    Ok(())
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// Read a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_whole_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Err(_) => Err(ApiError::BadBody),
    }
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
