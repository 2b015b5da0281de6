//! SQLite store: the embedded, zero-set-up default (single node, WAL mode).

mod access;
mod audit;
mod consent;
mod objects;
mod proof;
mod records;
mod retention;
mod review;
mod sessions;

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use time::OffsetDateTime;

use futures_util::stream::{BoxStream, StreamExt};
use uuid::Uuid;

use super::{
    severity_rank, tag_count, AuditFilter, ExportCandidate, ExportQuery, FileCopy, ItemChange,
    LegalHold, NewHold, NewPrincipal, NewSuspension, Record, RecordContent, RecordMeta,
    ReviewFilter, ReviewFlag, ReviewItem, ReviewOrder, Store, StoreError, StoredConsentEvent,
    StoredContent, Suspension, SweepReport, TableStats, TagCount, UpstreamObject, Usage,
    SEVERITY_RANK,
};
use crate::config::DatabaseConfig;
use crate::domain::access::{Principal, Role};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};

const META_COLUMNS: &str =
    "id, request_id, tenant_id, key_id, route, method, path, status, model, \
    prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, upstream_ttfb_us, \
    upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, profile, \
    policy_version, zero_data_retention, received_at, content_expires_at, expires_at, end_user_hash";

const CONTENT_COLUMNS: &str =
    "record_id, tenant_id, request_body, request_truncated, response_body, \
    response_truncated, received_at, expires_at, sealed, compressed";

const CONSENT_COLUMNS: &str =
    "id, tenant_id, opted_in, effective_at, recorded_at, actor, source, note";

/// Rows per sweep delete: each holds the database's single write lock.
const MAX_SWEEP_BATCH: i64 = 1_000;
const MIN_SWEEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

pub struct SqliteStore {
    pool: SqlitePool,
}

/// Instants are stored as microseconds since the Unix epoch.
fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("instant {us}: {e}")))
}

impl SqliteStore {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&config.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: durable against process crashes, batched fsync.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.connect_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// True for a row (`t`) that an active legal hold covers; `?1` is now.
fn held(id: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.ends_at > ?1 \
         AND h.tenant_id = t.tenant_id AND (h.record_id IS NULL OR h.record_id = t.{id}))"
    )
}

/// Per swept table, in order: the `FROM … WHERE` selecting rows to remove
/// (`?1` is now). Content and metadata skip rows a legal hold covers; an
/// export mark goes once its record's metadata is gone.
fn sweep_selections() -> [(&'static str, String); 7] {
    [
        (
            "record_content",
            format!(
                "FROM record_content t WHERE t.expires_at <= ?1 AND NOT {}",
                held("record_id")
            ),
        ),
        (
            "review_items",
            format!(
                "FROM review_items t WHERE t.expires_at <= ?1 AND NOT {}",
                held("record_id")
            ),
        ),
        (
            "record_meta",
            format!(
                "FROM record_meta t WHERE t.expires_at <= ?1 AND NOT {}",
                held("id")
            ),
        ),
        (
            "training_exports",
            "FROM training_exports t WHERE t.expires_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM record_meta m WHERE m.id = t.record_id)"
                .to_owned(),
        ),
        (
            "upstream_objects",
            "FROM upstream_objects t WHERE t.expires_at <= ?1".to_owned(),
        ),
        (
            "console_sessions",
            "FROM console_sessions t WHERE t.expires_at <= ?1".to_owned(),
        ),
        (
            "console_sign_ins",
            "FROM console_sign_ins t WHERE t.expires_at <= ?1".to_owned(),
        ),
    ]
}

/// Append `event` to the audit chain inside `tx` (see the PostgreSQL store).
async fn append_audit_in(
    tx: &mut sqlx::SqliteConnection,
    event: &AuditEvent,
) -> Result<i64, sqlx::Error> {
    let (seq, prev_hash): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
    let entry = AuditEntry::chain(event, seq - 1, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.seq)
    .bind(to_micros(entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.tenant.as_ref().map(|t| t.0.as_str()))
    .bind(&entry.subject)
    .bind(&entry.source)
    .bind(&entry.details)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = ? WHERE id = 1")
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await?;
    Ok(entry.seq)
}

fn audit_from_row(r: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: from_micros(r.try_get("at")?)?,
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

const EXPORT_CANDIDATES: &str =
    "SELECT m.id, m.tenant_id, m.received_at, m.path, m.status, m.outcome, m.streamed, \
    m.training_basis, m.expires_at, c.request_body, c.request_truncated, c.response_body, \
    c.response_truncated, c.expires_at AS content_expires_at, c.sealed, c.compressed, x.export_id \
    FROM record_meta m \
    LEFT JOIN record_content c ON c.record_id = m.id AND c.expires_at > ?3 \
    LEFT JOIN training_exports x ON x.record_id = m.id \
        AND (x.export_id = ?6 OR EXISTS (SELECT 1 FROM training_export_runs r WHERE r.export_id = x.export_id)) \
    WHERE m.training_usable AND NOT m.zero_data_retention \
      AND m.received_at >= ?1 AND m.received_at < ?2 AND m.expires_at > ?3 \
      AND (m.received_at, m.id) > (?4, ?5) \
    ORDER BY m.received_at, m.id";

fn candidate_from_row(r: &SqliteRow) -> Result<ExportCandidate, StoreError> {
    let basis: String = r.try_get("training_basis")?;
    let outcome: String = r.try_get("outcome")?;
    let status: i64 = r.try_get("status")?;
    let content = match r.try_get::<Option<Vec<u8>>, _>("request_body")? {
        None => None,
        Some(request_body) => Some(RecordContent {
            request_body,
            request_truncated: r.try_get("request_truncated")?,
            response_body: r.try_get("response_body")?,
            response_truncated: r.try_get("response_truncated")?,
            expires_at: from_micros(r.try_get("content_expires_at")?)?,
            sealed: r.try_get("sealed")?,
            compressed: r.try_get("compressed")?,
        }),
    };
    Ok(ExportCandidate {
        id: RecordId(r.try_get("id")?),
        tenant: TenantId(r.try_get("tenant_id")?),
        received_at: from_micros(r.try_get("received_at")?)?,
        path: r.try_get("path")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        streamed: r.try_get("streamed")?,
        basis: TrainingBasis::parse(&basis)
            .ok_or_else(|| StoreError::Corrupt(format!("training basis {basis:?}")))?,
        expires_at: from_micros(r.try_get("expires_at")?)?,
        content,
        exported_by: r.try_get("export_id")?,
    })
}

fn consent_from_row(r: &SqliteRow) -> Result<ConsentEvent, StoreError> {
    Ok(ConsentEvent {
        tenant: TenantId(r.try_get("tenant_id")?),
        opted_in: r.try_get("opted_in")?,
        effective_at: from_micros(r.try_get("effective_at")?)?,
        recorded_at: from_micros(r.try_get("recorded_at")?)?,
        actor: r.try_get("actor")?,
        source: r.try_get("source")?,
        note: r.try_get("note")?,
    })
}

fn meta_from_row(r: &SqliteRow) -> Result<RecordMeta, StoreError> {
    let basis: String = r.try_get("training_basis")?;
    let outcome: String = r.try_get("outcome")?;
    let status: i64 = r.try_get("status")?;
    let content_expires_at: Option<i64> = r.try_get("content_expires_at")?;
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
        received_at: from_micros(r.try_get("received_at")?)?,
        content_expires_at: content_expires_at.map(from_micros).transpose()?,
        expires_at: from_micros(r.try_get("expires_at")?)?,
        end_user_hash: r.try_get("end_user_hash")?,
    })
}

fn content_from_row(r: &SqliteRow) -> Result<RecordContent, StoreError> {
    Ok(RecordContent {
        request_body: r.try_get("request_body")?,
        request_truncated: r.try_get("request_truncated")?,
        response_body: r.try_get("response_body")?,
        response_truncated: r.try_get("response_truncated")?,
        expires_at: from_micros(r.try_get("expires_at")?)?,
        sealed: r.try_get("sealed")?,
        compressed: r.try_get("compressed")?,
    })
}

const ITEM_COLUMNS: &str =
    "record_id, tenant_id, severity, action, reasons, content_kept, status, \
    assignee, resolution, notes, created_at, updated_at, expires_at";

const PRINCIPAL_COLUMNS: &str = "id, name, role, created_at, expires_at, revoked_at";

fn item_from_row(r: &SqliteRow) -> Result<ReviewItem, StoreError> {
    let (severity, action, verdicts) = super::review_fields(
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
        created_at: from_micros(r.try_get("created_at")?)?,
        updated_at: from_micros(r.try_get("updated_at")?)?,
        expires_at: from_micros(r.try_get("expires_at")?)?,
    })
}

fn principal_from_row(r: &SqliteRow) -> Result<Principal, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(Principal {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        created_at: from_micros(r.try_get("created_at")?)?,
        expires_at: r
            .try_get::<Option<i64>, _>("expires_at")?
            .map(from_micros)
            .transpose()?,
        revoked_at: r
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(from_micros)
            .transpose()?,
    })
}

/// Add a suspension and its audit entry inside `tx`. Returns its id.
async fn insert_suspension_in(
    tx: &mut sqlx::SqliteConnection,
    s: &NewSuspension,
    at: OffsetDateTime,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO suspensions (tenant_id, key_id, reason, created_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )
    .bind(&s.tenant.0)
    .bind(s.key_id.as_deref())
    .bind(&s.reason)
    .bind(&s.created_by)
    .bind(to_micros(at))
    .fetch_one(&mut *tx)
    .await?;
    let mut audit = s.audit.clone();
    audit.subject = Some(format!("suspension:{id}"));
    append_audit_in(tx, &audit).await?;
    Ok(id)
}

const OBJECT_COLUMNS: &str =
    "route, object_id, kind, tenant_id, record_id, collection, created_at, \
    purge_at, deleted_at";

fn object_from_row(r: &SqliteRow) -> Result<UpstreamObject, StoreError> {
    Ok(UpstreamObject {
        route: r.try_get("route")?,
        object_id: r.try_get("object_id")?,
        kind: r.try_get("kind")?,
        tenant: TenantId(r.try_get("tenant_id")?),
        record_id: RecordId(r.try_get("record_id")?),
        collection: r.try_get("collection")?,
        created_at: from_micros(r.try_get("created_at")?)?,
        purge_at: r
            .try_get::<Option<i64>, _>("purge_at")?
            .map(from_micros)
            .transpose()?,
        deleted_at: r
            .try_get::<Option<i64>, _>("deleted_at")?
            .map(from_micros)
            .transpose()?,
    })
}
