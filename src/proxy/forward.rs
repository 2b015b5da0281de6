//! Forwarding: the request body read or streamed through the rules, the upstream call, and the response relayed through the tee.

use super::*;
use crate::proxy::upstream::UpstreamResponse;

pub(super) type ForwardResult = Result<Response, (ApiError, Exchange)>;

pub(super) async fn forward(
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
    let sent = Sent {
        exchange,
        ownership,
        file_op,
        file_source,
        list_headers,
        record_id,
        policy,
        url,
        method_was_head,
        started,
        sent_at,
    };
    relay(state, route, caller, sent, response).await
}

/// What `forward` hands on once the request is sent.
struct Sent {
    exchange: Exchange,
    ownership: Ownership,
    file_op: FileOp,
    file_source: Option<String>,
    list_headers: Option<http::HeaderMap>,
    record_id: RecordId,
    policy: Arc<EffectivePolicy>,
    url: String,
    method_was_head: bool,
    started: Instant,
    sent_at: Instant,
}

/// The upstream's answer relayed to the client through the tee; read first
/// where the registry or a kept file copy needs it (creates, deletes, lists).
async fn relay(
    state: &ProxyState,
    route: &RouteRuntime,
    caller: &Caller,
    sent: Sent,
    response: UpstreamResponse,
) -> ForwardResult {
    let Sent {
        mut exchange,
        ownership,
        file_op,
        file_source,
        list_headers,
        record_id,
        policy,
        url,
        method_was_head,
        started,
        sent_at,
    } = sent;
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
pub(super) struct BodyFlags {
    pub(super) exceeded: Arc<AtomicBool>,
    pub(super) client_failed: Arc<AtomicBool>,
}

/// How much of a refused body's rest is read (and discarded) so that its
/// client sees the answer; beyond it the connection is closed on it.
pub(super) const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

/// The request body as it goes upstream, once the inline rules have seen
/// what they need of it (a `block` refuses before anything is sent), with
/// its place in the body budget until it is sent.
pub(super) async fn checked_body(
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
pub(super) fn requests_this_minute(state: &ProxyState, caller: &Caller) -> u64 {
    if !state.config.rules.counts_requests() {
        return 0;
    }
    let tenant = &state.config.tenants[caller.tenant_index].id;
    state
        .rates
        .hit(&tenant.0, state.clock.now().unix_timestamp())
}

/// A request body streamed to the upstream through the tee: counted
/// against the limit, copied aside for the record (and for a file copy).
pub(super) fn streamed_body(
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
pub(super) fn apply_verdicts(
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
