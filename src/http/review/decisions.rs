//! Working an item: claim, assign, note, resolve (and the suspension a confirmation triggers).

use super::views::item_json;
use super::*;
use crate::review::desk::Resolution;

pub(super) async fn claim(State(state): State<ReviewState>, Authed(caller): Authed) -> ApiResult {
    Ok(match state.desk.claim_next(&caller).await? {
        Some(shown) => Json(item_json(&shown)).into_response(),
        None => http::StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    assignee: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    resolution: String,
    #[serde(default)]
    note: Option<String>,
}

pub(super) async fn assign(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    state.desk.gate(&caller, Action::AssignItem)?;
    let AssignBody { assignee } = parse_body(&body)?;
    let shown = state.desk.assign(&caller, &id, &assignee).await?;
    Ok(Json(item_json(&shown)).into_response())
}

pub(super) async fn note(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    state.desk.gate(&caller, Action::NoteItem)?;
    let NoteBody { text } = parse_body(&body)?;
    let shown = state.desk.note(&caller, &id, text).await?;
    Ok(Json(item_json(&shown)).into_response())
}

pub(super) async fn resolve(
    State(state): State<ReviewState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    state.desk.gate(&caller, Action::ResolveItem)?;
    let ResolveBody { resolution, note } = parse_body(&body)?;
    let resolution = Resolution::parse(&resolution)?;
    let shown = state.desk.resolve(&caller, &id, resolution, note).await?;
    Ok(Json(item_json(&shown)).into_response())
}
