//! Reading the queue: lists (filtered, paginated by cursor), one item with its payload (audited in the same transaction), counts.

use super::views::{item_json, record_json};
use super::*;
use crate::review::desk::ListParams;

pub(super) async fn list_items(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    async {
        let caller = caller_for(&state, &headers, peer, Action::ListItems).await?;
        let Query(params) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let page = state.desk.list(&caller, &params).await?;
        let data: Vec<Value> = page.items.iter().map(item_json).collect();
        Ok::<_, ApiError>(
            Json(json!({"data": data, "next_cursor": page.next_cursor})).into_response(),
        )
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn read_item(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    async {
        let caller = authenticate(&state, &headers, peer).await?;
        let read = state.desk.read(&caller, &id).await?;
        let mut body = item_json(&read.shown);
        body["record"] = record_json(&read.meta, &read.content);
        Ok::<_, ApiError>(Json(body).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn counts(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    async {
        let caller = authenticate(&state, &headers, peer).await?;
        let rows = state.desk.counts(&caller).await?;
        let data: Vec<Value> = rows
            .into_iter()
            .map(|(status, severity, count)| json!({"status": status, "severity": severity, "count": count}))
            .collect();
        Ok::<_, ApiError>(Json(json!({ "data": data })).into_response())
    }
    .await
    .unwrap_or_else(fail)
}
