//! The audit log and its chain check, for auditors and admins.

use super::*;
use crate::review::audit::{AuditParams, ChainCheck};

pub(super) async fn audit_entries(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    async {
        let caller = caller_for(&state, &headers, peer, Action::ReadAudit).await?;
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
        Ok::<_, ApiError>(
            Json(json!({"data": data, "next_after": page.next_after})).into_response(),
        )
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn verify(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    async {
        let caller = authenticate(&state, &headers, peer).await?;
        let body = match state.desk.verify_audit_chain(&caller).await? {
            ChainCheck::Verified { entries, head_seq } => {
                json!({"verified": true, "entries": entries, "head_seq": head_seq})
            }
            ChainCheck::Broken(why) => json!({"verified": false, "error": why}),
        };
        Ok::<_, ApiError>(Json(body).into_response())
    }
    .await
    .unwrap_or_else(fail)
}
