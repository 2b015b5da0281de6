//! What the data path does besides relaying for the files API (kept copies) and for answers the ownership registry must read first.

use super::*;

/// What the gateway does besides relaying, for the files API.
pub(super) enum FileOp {
    None,
    /// An upload being copied (kept if it is an accepted fine-tune file).
    Upload(PendingCopy),
    /// A delete of this file id: remove our copy once the upstream confirms.
    Delete(String),
}

/// Uploads and deletes of files on OpenAI routes, except for ZDR tenants
/// (whose files are never copied, so there is nothing to delete either).
pub(super) fn file_op(
    state: &ProxyState,
    flavor: Flavor,
    parts: &Parts,
    zero_data_retention: bool,
    record_id: RecordId,
    tenant: &crate::domain::TenantId,
) -> FileOp {
    if flavor != Flavor::Openai || zero_data_retention {
        return FileOp::None;
    }
    match (
        &parts.method,
        crate::objects::copies::file_target(parts.uri.path()),
    ) {
        (&http::Method::POST, Some(FileTarget::Collection)) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            state
                .files
                .begin(record_id, tenant, content_type)
                .map_or(FileOp::None, FileOp::Upload)
        }
        (&http::Method::DELETE, Some(FileTarget::File(id))) => FileOp::Delete(id.to_owned()),
        _ => FileOp::None,
    }
}

/// Files API answers are small JSON; more than this is relayed untouched.
pub(super) const FILES_RESPONSE_LIMIT: usize = 1 << 20;

/// The first event of a stream that creates an object (its id) is within this.
pub(super) const FIRST_EVENT_LIMIT: usize = 64 * 1024;

/// A list page read whole to be cut to the caller's objects.
pub(super) const LIST_PAGE_LIMIT: usize = 4 << 20;

/// The start of a response body: all of it when it fits in `limit`, or, for
/// an event stream (`first_event`), up to the end of its first event.
pub(super) async fn read_head_until(
    mut body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
    limit: usize,
    first_event: bool,
) -> (bytes::Bytes, RestOfBody) {
    if !first_event {
        return read_head(body, limit).await;
    }
    let mut head = bytes::BytesMut::new();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                // Events end with a blank line, in LF or CRLF.
                let ended = head.windows(2).any(|w| w == b"\n\n")
                    || head.windows(4).any(|w| w == b"\r\n\r\n");
                if ended || head.len() > limit {
                    return (head.freeze(), body.boxed());
                }
            }
            None => return (head.freeze(), futures_util::stream::empty().boxed()),
            Some(Err(e)) => return (head.freeze(), futures_util::stream::iter([Err(e)]).boxed()),
        }
    }
}

/// The start of a response body (all of it when it fits in `limit`) and the
/// rest as a stream.
pub(super) async fn read_head(
    mut body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
    limit: usize,
) -> (bytes::Bytes, RestOfBody) {
    let mut head = bytes::BytesMut::new();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                head.extend_from_slice(&chunk);
                if head.len() > limit {
                    return (head.freeze(), body.boxed());
                }
            }
            None => return (head.freeze(), futures_util::stream::empty().boxed()),
            Some(Err(e)) => return (head.freeze(), futures_util::stream::iter([Err(e)]).boxed()),
        }
    }
}

/// Keep or discard an upload's copy; remove a deleted file's copy.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish_file_op(
    state: &ProxyState,
    caller: &Caller,
    source: String,
    file_op: FileOp,
    tenant: &crate::domain::TenantId,
    record: RecordId,
    status: u16,
    body: &[u8],
) {
    match file_op {
        FileOp::None => {}
        FileOp::Upload(copy) => {
            let now = state.clock.now();
            state
                .files
                .complete(copy, tenant, record, status, body, now)
                .await;
        }
        FileOp::Delete(file_id) => {
            let audit = crate::domain::audit::AuditEvent {
                at: state.clock.now(),
                actor: format!("key:{}", caller.key_id),
                action: "file.deleted".into(),
                tenant: Some(tenant.clone()),
                subject: None,
                source,
                details: serde_json::json!({ "file_id": file_id, "record": record.to_string() }),
            };
            if let Err(e) = state
                .files
                .deleted_upstream(tenant, &file_id, status, body, audit)
                .await
            {
                metrics::counter!("custodian_file_copies_failed_total").increment(1);
                tracing::error!(tenant = %tenant, error = %e, "removing a deleted file's copy failed");
            }
        }
    }
}
