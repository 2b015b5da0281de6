//! The admin API over the review queue, on the admin listener only. Every
//! call is authenticated by a principal's bearer token (401 when missing,
//! unknown, expired or revoked) and authorised by its role (403). An item a
//! principal may not see answers 404, exactly as one that does not exist.
//! Every payload read, claim, assignment, note and resolution is audited in
//! the same transaction as the action.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{header, HeaderMap};
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Flavor;
use crate::crypto::{open_content, ContentKeys, ContentView};
use crate::domain::access::{Principal, Role};
use crate::domain::audit::AuditEvent;
use crate::domain::clock::Clock;
use crate::domain::records::Record;
use crate::domain::review::ReviewItem;
use crate::domain::verdict::Severity;
use crate::domain::RecordId;
use crate::export::finetune::answer_text;
use crate::http::error::ApiError;
use crate::policy::access::{self, Action};
use crate::review::redact::{redact, redact_body};
use crate::store::{AuditFilter, ItemChange, NewSuspension, ReviewFilter, Store, StoreError};

const MAX_PAGE: i64 = 500;
const MAX_NOTE_CHARS: usize = 4_000;

#[derive(Clone)]
pub struct ReviewState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub suspensions: Arc<crate::abuse::suspensions::Suspensions>,
    pub on_confirm: crate::config::OnConfirm,
    /// Opens encrypted content, when encryption is on.
    pub keys: Option<Arc<crate::crypto::ContentKeys>>,
}

pub fn router(state: ReviewState) -> Router {
    Router::new()
        .route("/admin/v1/review/items", get(list_items))
        .route("/admin/v1/review/items/{id}", get(read_item))
        .route("/admin/v1/review/claim", post(claim))
        .route("/admin/v1/review/items/{id}/assign", post(assign))
        .route("/admin/v1/review/items/{id}/notes", post(note))
        .route("/admin/v1/review/items/{id}/resolve", post(resolve))
        .route("/admin/v1/review/counts", get(counts))
        .route("/admin/v1/audit", get(audit_entries))
        .route("/admin/v1/openapi.json", get(openapi))
        .with_state(state)
}

type ApiResult = Result<Response, ApiError>;

fn fail(e: ApiError) -> Response {
    e.to_response(Flavor::Openai)
}

/// The caller, if its token names an active principal allowed `action`.
async fn authorize(
    state: &ReviewState,
    headers: &HeaderMap,
    action: Action,
) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::MissingKey)?;
    // Looked up by its hash: the token itself is never compared or stored.
    let principal = state
        .store
        .principal_by_token(&crate::domain::access::token_hash(token))
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::UnknownKey)?;
    if !principal.is_active(state.clock.now()) {
        return Err(ApiError::UnknownKey);
    }
    if !access::allowed(principal.role, action) {
        return Err(ApiError::Forbidden);
    }
    Ok(principal)
}

fn unavailable(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "admin API could not reach the store");
    ApiError::StoreUnavailable
}

fn audit(
    principal: &Principal,
    action: &str,
    item: Option<&ReviewItem>,
    peer: SocketAddr,
    now: OffsetDateTime,
    details: Value,
) -> AuditEvent {
    AuditEvent {
        at: now,
        actor: format!("principal:{}", principal.name),
        action: action.into(),
        tenant: item.map(|i| i.tenant.clone()),
        subject: None,
        source: peer.to_string(),
        details,
    }
}

/// The item if `principal` may see it; otherwise "not found".
async fn visible_item(
    state: &ReviewState,
    principal: &Principal,
    id: &str,
) -> Result<ReviewItem, ApiError> {
    let id = id
        .parse::<Uuid>()
        .map(RecordId)
        .map_err(|_| ApiError::NotFound)?;
    let item = state
        .store
        .review_item(id)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    if access::sees_only_assigned(principal.role)
        && item.assignee.as_deref() != Some(principal.name.as_str())
    {
        return Err(ApiError::NotFound);
    }
    // Past its content's expiry an item is gone, unless a hold keeps it.
    let now = state.clock.now();
    if item.expires_at <= now && !Holds::load(state, now).await?.keep(&item) {
        return Err(ApiError::NotFound);
    }
    Ok(item)
}

/// The legal holds active now, to say which items one keeps.
struct Holds(Vec<crate::domain::review::LegalHold>);

impl Holds {
    async fn load(state: &ReviewState, now: OffsetDateTime) -> Result<Self, ApiError> {
        let holds = state.store.list_holds().await.map_err(unavailable)?;
        Ok(Self(
            holds.into_iter().filter(|h| h.is_active(now)).collect(),
        ))
    }

    fn keep(&self, item: &ReviewItem) -> bool {
        self.0
            .iter()
            .any(|h| h.tenant == item.tenant && h.record.is_none_or(|r| r == item.record_id))
    }
}

/// How an item is shown to a principal.
#[derive(Clone, Copy)]
struct View {
    /// A contractor: personal data redacted, notes included.
    redacted: bool,
    /// A legal hold keeps the item past its expiry.
    held: bool,
}

impl View {
    fn for_principal(principal: &Principal) -> Self {
        Self {
            redacted: access::reads_redacted(principal.role),
            held: false,
        }
    }

    async fn of(
        state: &ReviewState,
        principal: &Principal,
        item: &ReviewItem,
    ) -> Result<Self, ApiError> {
        let mut view = Self::for_principal(principal);
        view.held = Holds::load(state, state.clock.now()).await?.keep(item);
        Ok(view)
    }
}

fn format_instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn item_json(item: &ReviewItem, view: View) -> Value {
    let notes = match view.redacted {
        true => redact_notes(&item.notes),
        false => item.notes.clone(),
    };
    json!({
        "record_id": item.record_id,
        "tenant": item.tenant,
        "severity": item.severity,
        "action": item.action,
        "reasons": item.verdicts,
        "content_kept": item.content_kept,
        "status": item.status,
        "assignee": item.assignee,
        "resolution": item.resolution,
        "notes": notes,
        "created_at": format_instant(item.created_at),
        "updated_at": format_instant(item.updated_at),
        "expires_at": format_instant(item.expires_at),
        "held": view.held,
    })
}

/// Notes as a contractor sees them: what reviewers wrote may quote the
/// payload, so their text is redacted like the payload is.
fn redact_notes(notes: &Value) -> Value {
    let mut notes = notes.clone();
    if let Some(list) = notes.as_array_mut() {
        for note in list {
            if let Some(text) = note.get("text").and_then(Value::as_str) {
                note["text"] = Value::String(redact(text));
            }
        }
    }
    notes
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    tenant: Option<String>,
    rule: Option<String>,
    severity: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn instant_param(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::InvalidRequest(format!("{name} must be an RFC 3339 instant"))
            })
        })
        .transpose()
}

fn cursor_of(item: &ReviewItem) -> String {
    format!(
        "{}_{}",
        item.created_at.unix_timestamp_nanos() / 1_000,
        item.record_id
    )
}

fn parse_cursor(cursor: &str) -> Result<(OffsetDateTime, RecordId), ApiError> {
    let bad = || ApiError::InvalidRequest("cursor is not one this API gave".into());
    let (micros, id) = cursor.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let nanos = micros.checked_mul(1_000).ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((at, RecordId(id.parse().map_err(|_| bad())?)))
}

async fn list_items(
    State(state): State<ReviewState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ListItems).await?;
        let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let severity = q
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    ApiError::InvalidRequest("severity is low, medium, high or critical".into())
                })
            })
            .transpose()?;
        let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let filter = ReviewFilter {
            status: q.status,
            tenant: q.tenant,
            rule: q.rule,
            severity,
            // Contractors list only what is assigned to them.
            assignee: access::sees_only_assigned(principal.role).then(|| principal.name.clone()),
            since: instant_param("since", q.since.as_deref())?,
            until: instant_param("until", q.until.as_deref())?,
            after: q.cursor.as_deref().map(parse_cursor).transpose()?,
            limit,
            live_at: Some(state.clock.now()),
        };
        let items = state
            .store
            .list_review_items(&filter)
            .await
            .map_err(unavailable)?;
        let next = (items.len() as i64 == limit)
            .then(|| items.last().map(cursor_of))
            .flatten();
        let holds = Holds::load(&state, state.clock.now()).await?;
        let view = View::for_principal(&principal);
        let data: Vec<Value> = items
            .iter()
            .map(|item| {
                item_json(
                    item,
                    View {
                        held: holds.keep(item),
                        ..view
                    },
                )
            })
            .collect();
        Ok::<_, ApiError>(Json(json!({"data": data, "next_cursor": next})).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

async fn read_item(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ReadItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let now = state.clock.now();
        let view = View::of(&state, &principal, &item).await?;
        let redacted = view.redacted;
        let event = audit(
            &principal,
            "review_item.read",
            Some(&item),
            peer,
            now,
            json!({"redacted": redacted}),
        );
        let (item, record) = state
            .store
            .read_review_item(item.record_id, &event)
            .await
            .map_err(unavailable)?
            .ok_or(ApiError::NotFound)?;
        let mut body = item_json(&item, view);
        body["record"] = record_json(&record, redacted, state.keys.as_deref());
        Ok::<_, ApiError>(Json(body).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

/// The record with its payload as readable text (redacted for contractors).
fn record_json(record: &Record, redacted: bool, keys: Option<&ContentKeys>) -> Value {
    let m = &record.meta;
    let shown = |bytes: &[u8]| match redacted {
        true => redact_body(bytes),
        false => String::from_utf8_lossy(bytes).into_owned(),
    };
    let content = match &record.content {
        Some(c) => match open_content(keys, m.id, &m.tenant, c) {
            ContentView::Readable { request, response } => {
                let response_text = match answer_text(&m.path, m.streamed, &response) {
                    Some(text) if redacted => redact(&text),
                    Some(text) => text,
                    None => shown(&response),
                };
                // A ZDR record with content: kept only because a rule flagged it.
                let state = if m.zero_data_retention {
                    "kept_for_safety_review"
                } else {
                    "present"
                };
                json!({
                    "state": state,
                    "request": shown(&request),
                    "request_truncated": c.request_truncated,
                    "response_text": response_text,
                    "response_truncated": c.response_truncated,
                })
            }
            // Its day's key is destroyed: as gone as a swept row.
            ContentView::Expired => json!({"state": "expired"}),
            ContentView::Unreadable => json!({"state": "unreadable"}),
        },
        None if m.zero_data_retention => json!({"state": "not_kept"}),
        None => json!({"state": "expired"}),
    };
    json!({
        "route": m.route,
        "method": m.method,
        "path": m.path,
        "status": m.status,
        "model": m.model,
        "outcome": m.outcome,
        "streamed": m.streamed,
        "received_at": format_instant(m.received_at),
        "key_id": m.key_id,
        "zero_data_retention": m.zero_data_retention,
        "content": content,
    })
}

async fn claim(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ClaimItem).await?;
        let now = state.clock.now();
        let event = audit(
            &principal,
            "review_item.claimed",
            None,
            peer,
            now,
            json!({}),
        );
        match state
            .store
            .claim_next_item(&principal.name, now, &event)
            .await
            .map_err(unavailable)?
        {
            Some(item) => {
                let view = View::of(&state, &principal, &item).await?;
                Ok::<_, ApiError>(Json(item_json(&item, view)).into_response())
            }
            None => Ok(http::StatusCode::NO_CONTENT.into_response()),
        }
    }
    .await
    .unwrap_or_else(fail)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    resolution: String,
    #[serde(default)]
    note: Option<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("bad body: {e}")))
}

async fn assign(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::AssignItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let AssignBody { assignee } = parse_body(&body)?;
        let now = state.clock.now();
        let target = state
            .store
            .list_principals()
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|p| p.name == assignee && p.is_active(now) && p.role != Role::Auditor)
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("{assignee:?} is not an active reviewer"))
            })?;
        let event = audit(
            &principal,
            "review_item.assigned",
            Some(&item),
            peer,
            now,
            json!({"assignee": target.name}),
        );
        apply(&state, &item, &ItemChange::Assign(target.name), now, &event).await?;
        current(&state, &principal, &item).await
    }
    .await
    .unwrap_or_else(fail)
}

async fn note(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::NoteItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let NoteBody { text } = parse_body(&body)?;
        let now = state.clock.now();
        add_note(&state, &principal, &item, peer, now, text).await?;
        current(&state, &principal, &item).await
    }
    .await
    .unwrap_or_else(fail)
}

fn check_note(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "a note is 1 to {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(())
}

async fn resolve(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ResolveItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let ResolveBody { resolution, note } = parse_body(&body)?;
        if !matches!(resolution.as_str(), "dismissed" | "confirmed") {
            return Err(ApiError::InvalidRequest(
                "resolution is dismissed or confirmed".into(),
            ));
        }
        let now = state.clock.now();
        if let Some(text) = note {
            add_note(&state, &principal, &item, peer, now, text).await?;
        }
        let event = audit(
            &principal,
            "review_item.resolved",
            Some(&item),
            peer,
            now,
            json!({"resolution": resolution}),
        );
        let suspension = match resolution == "confirmed" {
            true => suspension_for(&state, &principal, &item, peer, now)
                .await?
                .map(Box::new),
            false => None,
        };
        let suspends = suspension.is_some();
        let resolve = ItemChange::Resolve {
            resolution,
            by: principal.name.clone(),
            suspension,
        };
        apply(&state, &item, &resolve, now, &event).await?;
        if suspends {
            // This replica applies it at once, the others within their refresh.
            if let Err(e) = state.suspensions.refresh(state.store.as_ref()).await {
                tracing::warn!(error = %e, "suspensions refresh after a confirmation failed");
            }
        }
        current(&state, &principal, &item).await
    }
    .await
    .unwrap_or_else(fail)
}

/// The suspension a confirmation triggers, as configured (audited), to be
/// written in the resolution's transaction.
async fn suspension_for(
    state: &ReviewState,
    principal: &Principal,
    item: &ReviewItem,
    peer: SocketAddr,
    now: OffsetDateTime,
) -> Result<Option<NewSuspension>, ApiError> {
    use crate::config::OnConfirm;
    let key = match state.on_confirm {
        OnConfirm::None => return Ok(None),
        OnConfirm::SuspendTenant => None,
        OnConfirm::SuspendKey => {
            let record = state
                .store
                .get_record(item.record_id)
                .await
                .map_err(unavailable)?
                .ok_or(ApiError::NotFound)?;
            Some(record.meta.key_id.0)
        }
    };
    let reason = format!("confirmed abuse in review item {}", item.record_id);
    let event = audit(
        principal,
        "suspension.added",
        Some(item),
        peer,
        now,
        json!({"key_id": key, "reason": reason}),
    );
    Ok(Some(NewSuspension {
        tenant: item.tenant.clone(),
        key_id: key,
        reason,
        created_by: format!("principal:{}", principal.name),
        audit: event,
    }))
}

/// Apply a change with its audit entry.
async fn apply(
    state: &ReviewState,
    item: &ReviewItem,
    change: &ItemChange,
    now: OffsetDateTime,
    event: &AuditEvent,
) -> Result<(), ApiError> {
    let applied = state
        .store
        .update_review_item(item.record_id, change, now, event)
        .await
        .map_err(unavailable)?;
    if !applied {
        // Resolved already (or swept meanwhile): nothing to change.
        return Err(ApiError::InvalidRequest("the item is resolved".into()));
    }
    Ok(())
}

/// Add `principal`'s note to the item, audited.
async fn add_note(
    state: &ReviewState,
    principal: &Principal,
    item: &ReviewItem,
    peer: SocketAddr,
    now: OffsetDateTime,
    text: String,
) -> Result<(), ApiError> {
    check_note(&text)?;
    let event = audit(
        principal,
        "review_item.noted",
        Some(item),
        peer,
        now,
        json!({}),
    );
    let note = ItemChange::Note {
        author: principal.name.clone(),
        text,
    };
    apply(state, item, &note, now, &event).await
}

/// The item as it now is.
async fn current(state: &ReviewState, principal: &Principal, item: &ReviewItem) -> ApiResult {
    let item = state
        .store
        .review_item(item.record_id)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    let view = View::of(state, principal, &item).await?;
    Ok(Json(item_json(&item, view)).into_response())
}

async fn counts(State(state): State<ReviewState>, headers: HeaderMap) -> Response {
    async {
        authorize(&state, &headers, Action::Counts).await?;
        let rows = state
            .store
            .review_counts(state.clock.now())
            .await
            .map_err(unavailable)?;
        let data: Vec<Value> = rows
            .into_iter()
            .map(|(status, severity, count)| json!({"status": status, "severity": severity, "count": count}))
            .collect();
        Ok::<_, ApiError>(Json(json!({ "data": data })).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit_entries(
    State(state): State<ReviewState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    async {
        authorize(&state, &headers, Action::ReadAudit).await?;
        let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let filter = AuditFilter {
            actor: q.actor,
            action: q.action,
            subject: q.target,
            since: instant_param("since", q.since.as_deref())?,
            until: instant_param("until", q.until.as_deref())?,
            after: q.after.unwrap_or(0),
            limit,
        };
        let entries = state
            .store
            .query_audit(&filter)
            .await
            .map_err(unavailable)?;
        let next = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        let data: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq, "at": format_instant(e.at), "actor": e.actor, "action": e.action,
                    "tenant": e.tenant, "target": e.subject, "source": e.source,
                    "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                    "prev_hash": e.prev_hash, "hash": e.hash,
                })
            })
            .collect();
        Ok::<_, ApiError>(Json(json!({"data": data, "next_after": next})).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

/// The API description, as checked into the repository.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}
