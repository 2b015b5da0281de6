//! Reading the queue: lists (filtered, paginated by cursor), one item with its payload (audited in the same transaction), counts.

use super::views::{item_json, record_json};
use super::*;
use crate::review::desk::ListParams;

pub(super) async fn list_items(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    state.desk.gate(&caller, Action::ListItems)?;
    let Query(params) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let page = state.desk.list(&caller, &params).await?;
    let data: Vec<Value> = page.items.iter().map(item_json).collect();
    Ok(Json(json!({"data": data, "next_cursor": page.next_cursor})).into_response())
}

pub(super) async fn read_item(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult {
    let read = state.desk.read(&caller, &id).await?;
    let mut body = item_json(&read.shown);
    body["record"] = record_json(&read.meta, &read.content);
    Ok(Json(body).into_response())
}

pub(super) async fn counts(State(state): State<ReviewState>, Authed(caller): Authed) -> ApiResult {
    let rows = state.desk.counts(&caller).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(status, severity, count)| json!({"status": status, "severity": severity, "count": count}))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}
