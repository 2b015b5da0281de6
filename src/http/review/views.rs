//! How items and records are shown: holds, redaction for contractors, content that expired or cannot be opened.

use super::*;

/// The legal holds active now, to say which items one keeps.
pub(super) struct Holds(Vec<crate::domain::review::LegalHold>);

impl Holds {
    pub(super) async fn load(state: &ReviewState, now: OffsetDateTime) -> Result<Self, ApiError> {
        let holds = state.store.list_holds().await.map_err(unavailable)?;
        Ok(Self(
            holds.into_iter().filter(|h| h.is_active(now)).collect(),
        ))
    }

    pub(super) fn keep(&self, item: &ReviewItem) -> bool {
        self.0
            .iter()
            .any(|h| h.tenant == item.tenant && h.record.is_none_or(|r| r == item.record_id))
    }
}

/// How an item is shown to a principal.
#[derive(Clone, Copy)]
pub(super) struct View {
    /// A contractor: personal data redacted, notes included.
    pub(super) redacted: bool,
    /// A legal hold keeps the item past its expiry.
    pub(super) held: bool,
}

impl View {
    pub(super) fn for_principal(principal: &Principal) -> Self {
        Self {
            redacted: access::reads_redacted(principal.role),
            held: false,
        }
    }

    pub(super) async fn of(
        state: &ReviewState,
        principal: &Principal,
        item: &ReviewItem,
    ) -> Result<Self, ApiError> {
        let mut view = Self::for_principal(principal);
        view.held = Holds::load(state, state.clock.now()).await?.keep(item);
        Ok(view)
    }
}

pub(super) fn item_json(item: &ReviewItem, view: View) -> Value {
    let notes = match view.redacted {
        true => redact_notes(&item.notes),
        false => item.notes.clone(),
    };
    json!({
        "record_id": item.record_id,
        "tenant": item.tenant,
        "severity": item.severity,
        "action": item.action,
        "reasons": item.verdicts,
        "content_kept": item.content_kept,
        "status": item.status,
        "assignee": item.assignee,
        "resolution": item.resolution,
        "notes": notes,
        "created_at": format_instant(item.created_at),
        "updated_at": format_instant(item.updated_at),
        "expires_at": format_instant(item.expires_at),
        "held": view.held,
    })
}

/// Notes as a contractor sees them: what reviewers wrote may quote the
/// payload, so their text is redacted like the payload is.
pub(super) fn redact_notes(notes: &Value) -> Value {
    let mut notes = notes.clone();
    if let Some(list) = notes.as_array_mut() {
        for note in list {
            if let Some(text) = note.get("text").and_then(Value::as_str) {
                note["text"] = Value::String(redact(text));
            }
        }
    }
    notes
}

/// The record with its payload as readable text (redacted for contractors).
pub(super) fn record_json(record: &Record, redacted: bool, keys: Option<&ContentKeys>) -> Value {
    let m = &record.meta;
    let shown = |bytes: &[u8]| match redacted {
        true => redact_body(bytes),
        false => String::from_utf8_lossy(bytes).into_owned(),
    };
    let content = match &record.content {
        Some(c) => match open_content(keys, m.id, &m.tenant, c) {
            ContentView::Readable { request, response } => {
                let response_text = match answer_text(&m.path, m.streamed, &response) {
                    Some(text) if redacted => redact(&text),
                    Some(text) => text,
                    None => shown(&response),
                };
                // A ZDR record with content: kept only because a rule flagged it.
                let state = if m.zero_data_retention {
                    "kept_for_safety_review"
                } else {
                    "present"
                };
                json!({
                    "state": state,
                    "request": shown(&request),
                    "request_truncated": c.request_truncated,
                    "response_text": response_text,
                    "response_truncated": c.response_truncated,
                })
            }
            // Its day's key is destroyed: as gone as a swept row.
            ContentView::Expired => json!({"state": "expired"}),
            ContentView::Unreadable => json!({"state": "unreadable"}),
        },
        None if m.zero_data_retention => json!({"state": "not_kept"}),
        None => json!({"state": "expired"}),
    };
    json!({
        "route": m.route,
        "method": m.method,
        "path": m.path,
        "status": m.status,
        "model": m.model,
        "outcome": m.outcome,
        "streamed": m.streamed,
        "received_at": format_instant(m.received_at),
        "key_id": m.key_id,
        "zero_data_retention": m.zero_data_retention,
        "content": content,
    })
}
