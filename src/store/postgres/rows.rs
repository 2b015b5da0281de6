//! PostgreSQL rows into the domain's types, and the column lists they are read with.

use super::*;

pub(super) const META_COLUMNS: &str =
    "id, request_id, tenant_id, key_id, route, method, path, status, model, \
    prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, upstream_ttfb_us, \
    upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, profile, \
    policy_version, zero_data_retention, received_at, content_expires_at, expires_at, end_user_hash";

pub(super) const CONTENT_COLUMNS: &str =
    "record_id, tenant_id, request_body, request_truncated, response_body, \
    response_truncated, received_at, expires_at, sealed, compressed";

pub(super) fn audit_from_row(r: &PgRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        tenant: r.try_get::<Option<String>, _>("tenant_id")?.map(TenantId),
        subject: r.try_get("subject")?,
        source: r.try_get("source")?,
        details: r.try_get("details")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

pub(super) const EXPORT_CANDIDATES: &str =
    "SELECT m.id, m.tenant_id, m.received_at, m.path, m.status, m.outcome, m.streamed, \
    m.training_basis, m.expires_at, c.request_body, c.request_truncated, c.response_body, \
    c.response_truncated, c.expires_at AS content_expires_at, c.sealed, c.compressed, x.export_id \
    FROM record_meta m \
    LEFT JOIN record_content c ON c.record_id = m.id AND c.expires_at = m.content_expires_at \
        AND c.expires_at > $3 \
    LEFT JOIN training_exports x ON x.record_id = m.id \
        AND (x.export_id = $6 OR EXISTS (SELECT 1 FROM training_export_runs r WHERE r.export_id = x.export_id)) \
    WHERE m.training_usable AND NOT m.zero_data_retention \
      AND m.received_at >= $1 AND m.received_at < $2 AND m.expires_at > $3 \
      AND (m.received_at, m.id) > ($4, $5) \
    ORDER BY m.received_at, m.id";

pub(super) fn candidate_from_row(r: &PgRow) -> Result<ExportCandidate, StoreError> {
    let basis: String = r.try_get("training_basis")?;
    let outcome: String = r.try_get("outcome")?;
    let status: i32 = r.try_get("status")?;
    let content = match r.try_get::<Option<Vec<u8>>, _>("request_body")? {
        None => None,
        Some(request_body) => Some(RecordContent {
            request_body,
            request_truncated: r.try_get("request_truncated")?,
            response_body: r.try_get("response_body")?,
            response_truncated: r.try_get("response_truncated")?,
            expires_at: r.try_get("content_expires_at")?,
            sealed: r.try_get("sealed")?,
            compressed: r.try_get("compressed")?,
        }),
    };
    Ok(ExportCandidate {
        id: RecordId(r.try_get("id")?),
        tenant: TenantId(r.try_get("tenant_id")?),
        received_at: r.try_get("received_at")?,
        path: r.try_get("path")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        streamed: r.try_get("streamed")?,
        basis: TrainingBasis::parse(&basis)
            .ok_or_else(|| StoreError::Corrupt(format!("training basis {basis:?}")))?,
        expires_at: r.try_get("expires_at")?,
        content,
        exported_by: r.try_get("export_id")?,
    })
}

pub(super) fn consent_from_row(r: &PgRow) -> Result<ConsentEvent, StoreError> {
    Ok(ConsentEvent {
        tenant: TenantId(r.try_get("tenant_id")?),
        opted_in: r.try_get("opted_in")?,
        effective_at: r.try_get("effective_at")?,
        recorded_at: r.try_get("recorded_at")?,
        actor: r.try_get("actor")?,
        source: r.try_get("source")?,
        note: r.try_get("note")?,
    })
}

pub(super) fn meta_from_row(r: &PgRow) -> Result<RecordMeta, StoreError> {
    let basis: String = r.try_get("training_basis")?;
    let outcome: String = r.try_get("outcome")?;
    let status: i32 = r.try_get("status")?;
    Ok(RecordMeta {
        id: RecordId(r.try_get("id")?),
        request_id: r.try_get("request_id")?,
        tenant: TenantId(r.try_get("tenant_id")?),
        key_id: KeyId(r.try_get("key_id")?),
        route: r.try_get("route")?,
        method: r.try_get("method")?,
        path: r.try_get("path")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        model: r.try_get("model")?,
        usage: Usage {
            prompt_tokens: r.try_get("prompt_tokens")?,
            completion_tokens: r.try_get("completion_tokens")?,
            total_tokens: r.try_get("total_tokens")?,
        },
        streamed: r.try_get("streamed")?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        total_us: r.try_get("total_us")?,
        upstream_ttfb_us: r.try_get("upstream_ttfb_us")?,
        upstream_total_us: r.try_get("upstream_total_us")?,
        request_bytes: r.try_get("request_bytes")?,
        response_bytes: r.try_get("response_bytes")?,
        training: TrainingTag {
            usable: r.try_get("training_usable")?,
            basis: TrainingBasis::parse(&basis)
                .ok_or_else(|| StoreError::Corrupt(format!("training basis {basis:?}")))?,
        },
        profile: r.try_get("profile")?,
        policy_version: r.try_get("policy_version")?,
        zero_data_retention: r.try_get("zero_data_retention")?,
        received_at: r.try_get("received_at")?,
        content_expires_at: r.try_get("content_expires_at")?,
        expires_at: r.try_get("expires_at")?,
        end_user_hash: r.try_get("end_user_hash")?,
    })
}

pub(super) fn content_from_row(r: &PgRow) -> Result<RecordContent, StoreError> {
    Ok(RecordContent {
        request_body: r.try_get("request_body")?,
        request_truncated: r.try_get("request_truncated")?,
        response_body: r.try_get("response_body")?,
        response_truncated: r.try_get("response_truncated")?,
        expires_at: r.try_get("expires_at")?,
        sealed: r.try_get("sealed")?,
        compressed: r.try_get("compressed")?,
    })
}

pub(super) const ITEM_COLUMNS: &str =
    "record_id, tenant_id, severity, action, reasons, content_kept, status, \
    assignee, resolution, notes, created_at, updated_at, expires_at";

pub(super) const PRINCIPAL_COLUMNS: &str = "id, name, role, created_at, expires_at, revoked_at";

pub(super) fn item_from_row(r: &PgRow) -> Result<ReviewItem, StoreError> {
    let (severity, action, verdicts) = crate::store::review_fields(
        &r.try_get::<String, _>("severity")?,
        &r.try_get::<String, _>("action")?,
        &r.try_get::<String, _>("reasons")?,
    )?;
    let notes: String = r.try_get("notes")?;
    Ok(ReviewItem {
        record_id: RecordId(r.try_get("record_id")?),
        tenant: TenantId(r.try_get("tenant_id")?),
        severity,
        action,
        verdicts,
        content_kept: r.try_get("content_kept")?,
        status: r.try_get("status")?,
        assignee: r.try_get("assignee")?,
        resolution: r.try_get("resolution")?,
        notes: serde_json::from_str(&notes).unwrap_or_else(|_| serde_json::json!([])),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

pub(super) fn principal_from_row(r: &PgRow) -> Result<Principal, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Principal {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub(super) const OBJECT_COLUMNS: &str =
    "route, object_id, kind, tenant_id, record_id, collection, created_at, \
    purge_at, deleted_at";

pub(super) fn object_from_row(r: &PgRow) -> Result<UpstreamObject, StoreError> {
    Ok(UpstreamObject {
        route: r.try_get("route")?,
        object_id: r.try_get("object_id")?,
        kind: r.try_get("kind")?,
        tenant: TenantId(r.try_get("tenant_id")?),
        record_id: RecordId(r.try_get("record_id")?),
        collection: r.try_get("collection")?,
        created_at: r.try_get("created_at")?,
        purge_at: r.try_get("purge_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}
