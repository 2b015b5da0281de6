//! The audit log, for auditors and admins.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    pub(super) actor: Option<String>,
    pub(super) action: Option<String>,
    pub(super) target: Option<String>,
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    pub(super) after: Option<i64>,
    pub(super) limit: Option<i64>,
}

pub(super) async fn audit_entries(
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
