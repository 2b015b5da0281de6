//! The admin API over the review queue, on the admin listener only. Every
//! call is authenticated by a principal's bearer token (401 when missing,
//! unknown, expired or revoked) and authorised by its role (403). An item a
//! principal may not see answers 404, exactly as one that does not exist.
//! Every payload read, claim, assignment, note and resolution is audited in
//! the same transaction as the action.

mod audit_log;
mod decisions;
mod erasures;
mod queue;
mod views;
use audit_log::*;

use decisions::*;

use queue::*;

use views::*;

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
    /// Where erasures remove kept fine-tune files from.
    pub files: Option<crate::objects::copies::FileCopies>,
    /// The configured tenants (an erasure names one of them).
    pub tenants: Arc<[crate::domain::TenantId]>,
    /// Keys end-user hashes (`auth.end_user_key`), for erasure by end user.
    pub end_user_key: Option<crate::config::Secret>,
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
        .route("/admin/v1/erasures", post(erasures::erase))
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

fn format_instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The API description, as checked into the repository.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
        .into_response()
}
