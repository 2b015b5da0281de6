//! Tenant self-service for the training-use choice, on the proxy listener:
//! `GET /custodian/v1/data-sharing` shows the choice, what it means per route
//! and the history; `PUT` records a new choice, effective now or later,
//! never in the past. The caller is authenticated by its own API key, and
//! only a key registered to a tenant may read or change that tenant's
//! choice. Every change is audited in the same transaction.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{Config, Flavor, Tenant};
use crate::domain::audit::AuditEvent;
use crate::domain::clock::{truncate_to_micros, Clock};
use crate::domain::ConsentEvent;
use crate::http::error::ApiError;
use crate::policy::training::{latest_effective, scheduled};
use crate::policy::{decide_training_use, TrainingInputs};
use crate::proxy::auth::{ApiKeys, Caller, KeyKind};
use crate::proxy::consent::ConsentCache;
use crate::store::Store;

/// Where the endpoint lives; the `/custodian/` prefix is the gateway's own.
pub const PATH: &str = "/custodian/v1/data-sharing";

/// Bodies are a few fields; anything larger is not a change request.
const MAX_BODY_BYTES: usize = 16 * 1024;
const MAX_NOTE_CHARS: usize = 1_000;

#[derive(Clone)]
pub struct DataSharingState {
    pub config: Arc<Config>,
    pub api_keys: Arc<ApiKeys>,
    pub store: Arc<dyn Store>,
    pub consent: Arc<ConsentCache>,
    pub clock: Arc<dyn Clock>,
}

pub async fn handle(State(state): State<DataSharingState>, request: Request) -> Response {
    let result = match *request.method() {
        Method::GET => show(&state, request).await,
        Method::PUT => change(&state, request).await,
        _ => Err(ApiError::MethodNotAllowed),
    };
    let mut response = result.unwrap_or_else(|e| e.to_response(Flavor::Openai));
    let not_allowed = response.status() == StatusCode::METHOD_NOT_ALLOWED;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if not_allowed {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, PUT"));
    }
    response
}

async fn show(state: &DataSharingState, request: Request) -> Result<Response, ApiError> {
    let (tenant, _) = authenticate(state, request.headers())?;
    document(state, tenant).await
}

async fn change(state: &DataSharingState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (tenant, caller) = authenticate(state, &parts.headers)?;
    let body = read_body(body).await?;
    let change = ChangeRequest::parse(&body)?;
    let now = truncate_to_micros(state.clock.now());
    let effective_at = change.effective_at.unwrap_or(now);
    if effective_at < now {
        return Err(ApiError::InvalidRequest(
            "effective_at is in the past: a change applies from now or a later instant. \
             Leave effective_at out to apply it now."
                .into(),
        ));
    }
    let actor = format!("key:{}", caller.key_id);
    let event = ConsentEvent {
        tenant: tenant.id.clone(),
        opted_in: change.training_opt_in,
        effective_at,
        recorded_at: now,
        actor: actor.clone(),
        source: "self_service".into(),
        note: change.note,
    };
    let audit = AuditEvent {
        at: now,
        actor,
        action: "consent.changed".into(),
        tenant: Some(tenant.id.clone()),
        subject: None,
        source: crate::proxy::headers::client_address(
            &parts.extensions,
            &parts.headers,
            &state.config.server.trusted_proxies,
        ),
        details: serde_json::json!({
            "via": "self_service",
            "training_opt_in": event.opted_in,
            "effective_at": format_instant(effective_at),
        }),
    };
    state
        .store
        .record_consent(&event, &audit)
        .await
        .map_err(store_unavailable)?;
    tracing::info!(tenant = %tenant.id, opted_in = event.opted_in, "consent changed by self-service");
    // This replica applies the change at once; others within the refresh bound.
    if let Err(e) = state.consent.refresh(state.store.as_ref()).await {
        tracing::warn!(error = %e, "consent refresh after a change failed");
    }
    document(state, tenant).await
}

/// The caller's tenant. Only keys registered to a tenant speak for it: a
/// default-tenant mapping proves nothing about who is calling.
fn authenticate<'a>(
    state: &'a DataSharingState,
    headers: &HeaderMap,
) -> Result<(&'a Tenant, Caller), ApiError> {
    let caller = state
        .api_keys
        .identify(Flavor::Openai, headers)
        .map_err(|e| match e {
            crate::proxy::auth::AuthError::MissingKey => ApiError::MissingKey,
            crate::proxy::auth::AuthError::UnknownKey => ApiError::UnknownKey,
        })?;
    match caller.kind {
        KeyKind::Managed | KeyKind::PassThrough => {}
        KeyKind::Anonymous => return Err(ApiError::MissingKey),
        KeyKind::Unregistered => return Err(ApiError::UnregisteredKey),
    }
    let tenant = state
        .config
        .tenants
        .get(caller.tenant_index)
        .ok_or(ApiError::UnknownKey)?;
    Ok((tenant, caller))
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    crate::proxy::read_whole_body(body, MAX_BODY_BYTES).await
}

/// The body of a `PUT`. Unknown fields are refused: a body naming a tenant
/// (or anything else) is a mistake worth reporting, not ignoring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    training_opt_in: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    effective_at: Option<OffsetDateTime>,
    #[serde(default)]
    note: Option<String>,
}

impl ChangeRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let change: Self = serde_json::from_slice(body).map_err(|e| {
            ApiError::InvalidRequest(format!(
                "The body must be a JSON object like {{\"training_opt_in\": true}} \
                 (optional: \"effective_at\" as RFC 3339, \"note\"): {e}"
            ))
        })?;
        if change
            .note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
        {
            return Err(ApiError::InvalidRequest(format!(
                "note is longer than {MAX_NOTE_CHARS} characters"
            )));
        }
        Ok(change)
    }
}

#[derive(Serialize)]
struct Document {
    object: &'static str,
    tenant: String,
    /// The choice in effect now; `None` when the tenant never chose.
    training_opt_in: Option<bool>,
    choice_effective_at: Option<String>,
    /// What a request received now gets on each route.
    routes: Vec<RouteTag>,
    /// Choices that take effect later.
    scheduled: Vec<EventView>,
    /// Every recorded choice, oldest first.
    history: Vec<EventView>,
}

#[derive(Serialize)]
struct RouteTag {
    route: String,
    profile: String,
    training: &'static str,
    basis: &'static str,
}

#[derive(Serialize)]
struct EventView {
    training_opt_in: bool,
    effective_at: String,
    recorded_at: String,
    actor: String,
    source: String,
    note: Option<String>,
}

impl From<&ConsentEvent> for EventView {
    fn from(e: &ConsentEvent) -> Self {
        Self {
            training_opt_in: e.opted_in,
            effective_at: format_instant(e.effective_at),
            recorded_at: format_instant(e.recorded_at),
            actor: e.actor.clone(),
            source: e.source.clone(),
            note: e.note.clone(),
        }
    }
}

/// Read from the store, not the cache: the answer reflects every replica's
/// writes, including a change made a moment ago.
async fn document(state: &DataSharingState, tenant: &Tenant) -> Result<Response, ApiError> {
    let history = state
        .store
        .consent_history(&tenant.id)
        .await
        .map_err(store_unavailable)?;
    let now = state.clock.now();
    let current = latest_effective(&history, now);
    let routes = state
        .config
        .routes
        .iter()
        .zip(&tenant.policies)
        .map(|(route, policy)| {
            let tag = decide_training_use(TrainingInputs {
                zero_data_retention: policy.zero_data_retention,
                request_opt_out: false,
                consent_events: Some(&history),
                cutover: policy.training_cutover,
                received_at: now,
            });
            RouteTag {
                route: route.name.clone(),
                profile: policy.profile.to_string(),
                training: tag.receipt(),
                basis: tag.basis.as_str(),
            }
        })
        .collect();
    let doc = Document {
        object: "custodian.data_sharing",
        tenant: tenant.id.0.clone(),
        training_opt_in: current.map(|e| e.opted_in),
        choice_effective_at: current.map(|e| format_instant(e.effective_at)),
        routes,
        scheduled: scheduled(&history, now)
            .into_iter()
            .map(EventView::from)
            .collect(),
        history: history.iter().map(EventView::from).collect(),
    };
    Ok((StatusCode::OK, axum::Json(doc)).into_response())
}

fn store_unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "data-sharing request could not reach the store");
    ApiError::StoreUnavailable
}

/// The peer address, and what a proxy in front says about the client.
fn format_instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_requests_parse_strictly() {
        let ok = ChangeRequest::parse(br#"{"training_opt_in": false}"#).unwrap();
        assert!(!ok.training_opt_in && ok.effective_at.is_none());
        let later = ChangeRequest::parse(
            br#"{"training_opt_in": true, "effective_at": "2030-01-01T00:00:00Z", "note": "dpa"}"#,
        )
        .unwrap();
        assert_eq!(later.effective_at.unwrap().year(), 2030);
        for bad in [
            &br#"{"training_opt_in": true, "tenant": "other"}"#[..],
            br#"{"training_opt_in": "yes"}"#,
            br#"{}"#,
            br#"{"training_opt_in": true, "effective_at": "tomorrow"}"#,
            b"not json",
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(ChangeRequest::parse(bad), Err(ApiError::InvalidRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn overlong_notes_are_refused() {
        let body = serde_json::json!({"training_opt_in": true, "note": "n".repeat(1_001)});
        assert!(ChangeRequest::parse(body.to_string().as_bytes()).is_err());
    }
}
