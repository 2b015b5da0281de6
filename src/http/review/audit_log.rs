//! The audit log and its chain check, for auditors and admins.

use super::*;
use crate::review::audit::{AuditParams, ChainCheck};

pub(super) async fn audit_entries(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    state.desk.gate(&caller, Action::ReadAudit)?;
    let Query(params) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let page = state.desk.audit_log(&caller, &params).await?;
    let data: Vec<Value> = page
        .entries
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
    Ok(Json(json!({"data": data, "next_after": page.next_after})).into_response())
}

pub(super) async fn verify(State(state): State<ReviewState>, Authed(caller): Authed) -> ApiResult {
    let body = match state.desk.verify_audit_chain(&caller).await? {
        ChainCheck::Verified { entries, head_seq } => {
            json!({"verified": true, "entries": entries, "head_seq": head_seq})
        }
        ChainCheck::Broken(why) => json!({"verified": false, "error": why}),
    };
    Ok(Json(body).into_response())
}
