//! Working an item: claim, assign, note, resolve (and the suspension a confirmation triggers).

use super::views::item_json;
use super::*;
use crate::review::desk::Resolution;

pub(super) async fn claim(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    async {
        let caller = authenticate(&state, &headers, peer).await?;
        Ok::<_, ApiError>(match state.desk.claim_next(&caller).await? {
            Some(shown) => Json(item_json(&shown)).into_response(),
            None => http::StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await
    .unwrap_or_else(fail)
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let caller = caller_for(&state, &headers, peer, Action::AssignItem).await?;
        let AssignBody { assignee } = parse_body(&body)?;
        let shown = state.desk.assign(&caller, &id, &assignee).await?;
        Ok::<_, ApiError>(Json(item_json(&shown)).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn note(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let caller = caller_for(&state, &headers, peer, Action::NoteItem).await?;
        let NoteBody { text } = parse_body(&body)?;
        let shown = state.desk.note(&caller, &id, text).await?;
        Ok::<_, ApiError>(Json(item_json(&shown)).into_response())
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) async fn resolve(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let caller = caller_for(&state, &headers, peer, Action::ResolveItem).await?;
        let ResolveBody { resolution, note } = parse_body(&body)?;
        let resolution = Resolution::parse(&resolution)?;
        let shown = state.desk.resolve(&caller, &id, resolution, note).await?;
        Ok::<_, ApiError>(Json(item_json(&shown)).into_response())
    }
    .await
    .unwrap_or_else(fail)
}
