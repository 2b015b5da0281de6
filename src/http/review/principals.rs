//! Principals (admins) and tenants' overviews (no payload) over the desk.

use super::*;
use crate::domain::access::Role;
use crate::review::tenants::TenantOverview;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    name: String,
    role: String,
    #[serde(default)]
    expires_at: Option<String>,
}

pub(super) async fn list(State(state): State<ReviewState>, Authed(caller): Authed) -> ApiResult {
    let now = state.desk.now();
    let data: Vec<Value> = state
        .desk
        .principals(&caller)
        .await?
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "role": p.role, "state": p.state(now),
                "created_at": format_instant(p.created_at),
                "expires_at": p.expires_at.map(format_instant),
                "revoked_at": p.revoked_at.map(format_instant),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

pub(super) async fn add(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    body: axum::body::Bytes,
) -> ApiResult {
    state.desk.gate(&caller, Action::ManagePrincipals)?;
    let AddBody {
        name,
        role,
        expires_at,
    } = parse_body(&body)?;
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::InvalidRequest("role is admin, reviewer, contractor or auditor".into())
    })?;
    let expires_at = crate::review::desk::instant_param("expires_at", expires_at.as_deref())?;
    let token = state
        .desk
        .add_principal(&caller, &name, role, expires_at)
        .await?;
    let body = json!({"name": name.trim(), "role": role, "token": token});
    Ok((http::StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn revoke(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    Path(name): Path<String>,
) -> ApiResult {
    state.desk.revoke_principal(&caller, &name).await?;
    Ok(Json(json!({"name": name, "revoked": true})).into_response())
}

pub(super) async fn tenants(State(state): State<ReviewState>, Authed(caller): Authed) -> ApiResult {
    let data: Vec<Value> = state
        .desk
        .tenants(&caller)
        .await?
        .iter()
        .map(tenant_json)
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

fn tenant_json(t: &TenantOverview) -> Value {
    json!({
        "tenant": t.id,
        "zero_data_retention": t.zero_data_retention,
        "consent": t.consent,
        "routes": t.routes.iter().map(|r| json!({
            "route": r.route, "profile": r.profile,
            "training": if r.tag.usable { "allowed" } else { "denied" },
            "basis": r.tag.basis,
        })).collect::<Vec<_>>(),
        "holds": t.holds.iter().map(|h| json!({
            "id": h.id, "record": h.record, "reason": h.reason, "created_by": h.created_by,
            "created_at": format_instant(h.created_at), "ends_at": format_instant(h.ends_at),
            "released_at": h.released_at.map(format_instant),
        })).collect::<Vec<_>>(),
        "suspensions": t.suspensions.iter().map(|s| json!({
            "id": s.id, "key_id": s.key_id, "reason": s.reason, "created_by": s.created_by,
            "created_at": format_instant(s.created_at), "lifted_at": s.lifted_at.map(format_instant),
        })).collect::<Vec<_>>(),
    })
}
