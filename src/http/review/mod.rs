//! The admin API over the review desk, on the admin listener only. Every
//! call is authenticated by a principal's bearer token (401 when missing,
//! unknown, expired or revoked); what it may do and see is the desk's
//! decision (`review::desk`: 403 for a role that may not, 404 for an item
//! it may not see, exactly as one that does not exist). Every payload read,
//! claim, assignment, note and resolution is audited in the same
//! transaction as the action.

mod audit_log;
mod decisions;
mod erasures;
mod principals;
mod queue;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header;
use http::request::Parts;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Flavor;
use crate::http::error::ApiError;
use crate::policy::access::Action;
use crate::review::desk::format_instant;
use crate::review::{Caller, Desk};

#[derive(Clone)]
pub struct ReviewState {
    pub desk: Desk,
    /// Where erasures remove kept fine-tune files from.
    pub files: Option<crate::objects::copies::FileCopies>,
    /// The configured tenants (an erasure names one of them).
    pub tenants: Arc<[crate::domain::TenantId]>,
    /// Keys end-user hashes (`auth.end_user_key`), for erasure by end user.
    pub end_user_key: Option<crate::config::Secret>,
}

pub fn router(state: ReviewState) -> Router {
    Router::new()
        .route("/admin/v1/review/items", get(queue::list_items))
        .route("/admin/v1/review/items/{id}", get(queue::read_item))
        .route("/admin/v1/review/claim", post(decisions::claim))
        .route(
            "/admin/v1/review/items/{id}/assign",
            post(decisions::assign),
        )
        .route("/admin/v1/review/items/{id}/notes", post(decisions::note))
        .route(
            "/admin/v1/review/items/{id}/resolve",
            post(decisions::resolve),
        )
        .route("/admin/v1/review/counts", get(queue::counts))
        .route("/admin/v1/audit", get(audit_log::audit_entries))
        .route("/admin/v1/audit/verify", get(audit_log::verify))
        .route(
            "/admin/v1/principals",
            get(principals::list).post(principals::add),
        )
        .route(
            "/admin/v1/principals/{name}/revoke",
            post(principals::revoke),
        )
        .route("/admin/v1/tenants", get(principals::tenants))
        .route("/admin/v1/erasures", post(erasures::erase))
        .route("/admin/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// What a handler answers: its response, or the error in the OpenAI shape.
type ApiResult = Result<Response, Failed>;

/// An error as the admin API answers it.
struct Failed(ApiError);

impl<E: Into<ApiError>> From<E> for Failed {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        self.0.to_response(Flavor::Openai)
    }
}

/// The caller its bearer token names, if that is an active principal (401
/// otherwise, before anything else of the request is read).
struct Authed(Caller);

impl FromRequestParts<ReviewState> for Authed {
    type Rejection = Failed;

    async fn from_request_parts(parts: &mut Parts, state: &ReviewState) -> Result<Self, Failed> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::MissingKey)?;
        let principal = state.desk.principal_for_token(token).await?;
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        Ok(Self(Caller {
            principal,
            source,
            via: None,
        }))
    }
}

/// A JSON body, once the desk's gate has let the caller through (a refusal
/// never depends on the body).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("bad body: {e}")))
}

/// The API description, as checked into the repository.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
        .into_response()
}
