//! Items and records as JSON: holds, redaction for contractors (done by the
//! desk), content that expired or cannot be opened.

use super::*;
use crate::domain::records::RecordMeta;
use crate::review::desk::Shown;
use crate::review::payload::Content;

pub(super) fn item_json(shown: &Shown) -> Value {
    let item = &shown.item;
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
        "notes": shown.notes(),
        "created_at": format_instant(item.created_at),
        "updated_at": format_instant(item.updated_at),
        "expires_at": format_instant(item.expires_at),
        "held": shown.view.held,
    })
}

/// The record with its payload as readable text (redacted for contractors).
pub(super) fn record_json(m: &RecordMeta, content: &Content) -> Value {
    let content_json = match content {
        Content::Readable(p) => json!({
            "state": content.state(),
            "request": p.request_text(),
            "request_truncated": p.request_truncated,
            "response_text": p.response_text(),
            "response_truncated": p.response_truncated,
        }),
        _ => json!({"state": content.state()}),
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
        "content": content_json,
    })
}
