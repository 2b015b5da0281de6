//! `POST /admin/v1/erasures`: erase a tenant's data on request (admins).

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EraseBody {
    pub(super) tenant: String,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) include_metadata: bool,
    /// Only this end user's records (live rows, not backups).
    #[serde(default)]
    pub(super) end_user: Option<String>,
}

pub(super) async fn erase(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    body: axum::body::Bytes,
) -> ApiResult {
    state.desk.gate(&caller, Action::EraseTenant)?;
    let EraseBody {
        tenant,
        reason,
        include_metadata,
        end_user,
    } = parse_body(&body)?;
    let tenant = state
        .tenants
        .iter()
        .find(|t| t.0 == tenant)
        .cloned()
        .ok_or_else(|| ApiError::InvalidRequest(format!("no tenant {tenant:?} is configured")))?;
    let end_user_hash = match (end_user, &state.end_user_key) {
        (None, _) => None,
        (Some(user), Some(key)) => Some(crate::domain::records::end_user_hash(
            key.expose().as_bytes(),
            &tenant,
            &user,
        )),
        (Some(_), None) => {
            return Err(ApiError::InvalidRequest(
                "auth.end_user_key is not configured: end-user ids are not recorded".into(),
            )
            .into())
        }
    };
    let request = crate::erasure::Request {
        tenant,
        include_metadata,
        end_user_hash,
        reason,
        actor: format!("principal:{}", caller.principal.name),
        source: caller.source.clone(),
    };
    let erased = crate::erasure::erase(
        state.desk.store(),
        state.files.as_ref(),
        state.desk.keys(),
        &request,
        state.desk.now(),
    )
    .await
    .map_err(|e| match e {
        crate::erasure::ErasureError::NoReason => ApiError::InvalidRequest(e.to_string()),
        e => {
            tracing::error!(error = %e, "erasure failed");
            ApiError::StoreUnavailable
        }
    })?;
    Ok(Json(json!({"tenant": request.tenant.0, "erased": erased})).into_response())
}
