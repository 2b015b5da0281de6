//! Working an item: claim, assign, note, resolve (and the suspension a confirmation triggers).

use super::*;

pub(super) async fn claim(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ClaimItem).await?;
        let now = state.clock.now();
        let event = audit(
            &principal,
            "review_item.claimed",
            None,
            peer,
            now,
            json!({}),
        );
        match state
            .store
            .claim_next_item(&principal.name, now, &event)
            .await
            .map_err(unavailable)?
        {
            Some(item) => {
                let view = View::of(&state, &principal, &item).await?;
                Ok::<_, ApiError>(Json(item_json(&item, view)).into_response())
            }
            None => Ok(http::StatusCode::NO_CONTENT.into_response()),
        }
    }
    .await
    .unwrap_or_else(fail)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    pub(super) assignee: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteBody {
    pub(super) text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    pub(super) resolution: String,
    #[serde(default)]
    pub(super) note: Option<String>,
}

pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("bad body: {e}")))
}

pub(super) async fn assign(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::AssignItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let AssignBody { assignee } = parse_body(&body)?;
        let now = state.clock.now();
        let target = state
            .store
            .list_principals()
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|p| p.name == assignee && p.is_active(now) && p.role != Role::Auditor)
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("{assignee:?} is not an active reviewer"))
            })?;
        let event = audit(
            &principal,
            "review_item.assigned",
            Some(&item),
            peer,
            now,
            json!({"assignee": target.name}),
        );
        apply(&state, &item, &ItemChange::Assign(target.name), now, &event).await?;
        current(&state, &principal, &item).await
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
        let principal = authorize(&state, &headers, Action::NoteItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let NoteBody { text } = parse_body(&body)?;
        let now = state.clock.now();
        add_note(&state, &principal, &item, peer, now, text).await?;
        current(&state, &principal, &item).await
    }
    .await
    .unwrap_or_else(fail)
}

pub(super) fn check_note(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "a note is 1 to {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(())
}

pub(super) async fn resolve(
    State(state): State<ReviewState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    async {
        let principal = authorize(&state, &headers, Action::ResolveItem).await?;
        let item = visible_item(&state, &principal, &id).await?;
        let ResolveBody { resolution, note } = parse_body(&body)?;
        if !matches!(resolution.as_str(), "dismissed" | "confirmed") {
            return Err(ApiError::InvalidRequest(
                "resolution is dismissed or confirmed".into(),
            ));
        }
        let now = state.clock.now();
        if let Some(text) = note {
            add_note(&state, &principal, &item, peer, now, text).await?;
        }
        let event = audit(
            &principal,
            "review_item.resolved",
            Some(&item),
            peer,
            now,
            json!({"resolution": resolution}),
        );
        let suspension = match resolution == "confirmed" {
            true => suspension_for(&state, &principal, &item, peer, now)
                .await?
                .map(Box::new),
            false => None,
        };
        let suspends = suspension.is_some();
        let resolve = ItemChange::Resolve {
            resolution,
            by: principal.name.clone(),
            suspension,
        };
        apply(&state, &item, &resolve, now, &event).await?;
        if suspends {
            // This replica applies it at once, the others within their refresh.
            if let Err(e) = state.suspensions.refresh(state.store.as_ref()).await {
                tracing::warn!(error = %e, "suspensions refresh after a confirmation failed");
            }
        }
        current(&state, &principal, &item).await
    }
    .await
    .unwrap_or_else(fail)
}

/// The suspension a confirmation triggers, as configured (audited), to be
/// written in the resolution's transaction.
pub(super) async fn suspension_for(
    state: &ReviewState,
    principal: &Principal,
    item: &ReviewItem,
    peer: SocketAddr,
    now: OffsetDateTime,
) -> Result<Option<NewSuspension>, ApiError> {
    use crate::config::OnConfirm;
    let key = match state.on_confirm {
        OnConfirm::None => return Ok(None),
        OnConfirm::SuspendTenant => None,
        OnConfirm::SuspendKey => {
            let record = state
                .store
                .get_record(item.record_id)
                .await
                .map_err(unavailable)?
                .ok_or(ApiError::NotFound)?;
            Some(record.meta.key_id.0)
        }
    };
    let reason = format!("confirmed abuse in review item {}", item.record_id);
    let event = audit(
        principal,
        "suspension.added",
        Some(item),
        peer,
        now,
        json!({"key_id": key, "reason": reason}),
    );
    Ok(Some(NewSuspension {
        tenant: item.tenant.clone(),
        key_id: key,
        reason,
        created_by: format!("principal:{}", principal.name),
        audit: event,
    }))
}

/// Apply a change with its audit entry.
pub(super) async fn apply(
    state: &ReviewState,
    item: &ReviewItem,
    change: &ItemChange,
    now: OffsetDateTime,
    event: &AuditEvent,
) -> Result<(), ApiError> {
    let applied = state
        .store
        .update_review_item(item.record_id, change, now, event)
        .await
        .map_err(unavailable)?;
    if !applied {
        // Resolved already (or swept meanwhile): nothing to change.
        return Err(ApiError::InvalidRequest("the item is resolved".into()));
    }
    Ok(())
}

/// Add `principal`'s note to the item, audited.
pub(super) async fn add_note(
    state: &ReviewState,
    principal: &Principal,
    item: &ReviewItem,
    peer: SocketAddr,
    now: OffsetDateTime,
    text: String,
) -> Result<(), ApiError> {
    check_note(&text)?;
    let event = audit(
        principal,
        "review_item.noted",
        Some(item),
        peer,
        now,
        json!({}),
    );
    let note = ItemChange::Note {
        author: principal.name.clone(),
        text,
    };
    apply(state, item, &note, now, &event).await
}

/// The item as it now is.
pub(super) async fn current(
    state: &ReviewState,
    principal: &Principal,
    item: &ReviewItem,
) -> ApiResult {
    let item = state
        .store
        .review_item(item.record_id)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)?;
    let view = View::of(state, principal, &item).await?;
    Ok(Json(item_json(&item, view)).into_response())
}
