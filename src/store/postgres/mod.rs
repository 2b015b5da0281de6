//! PostgreSQL store: production, several replicas on one database.

mod access;
mod audit;
mod consent;
mod objects;
mod records;
mod retention;
mod review;

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use time::{Date, Month, OffsetDateTime};

use futures_util::stream::{BoxStream, StreamExt};
use uuid::Uuid;

use super::{
    tag_count, AuditFilter, ExportCandidate, ExportQuery, FileCopy, ItemChange, LegalHold, NewHold,
    NewPrincipal, NewSuspension, Record, RecordContent, RecordMeta, ReviewFilter, ReviewFlag,
    ReviewItem, Store, StoreError, StoredConsentEvent, StoredContent, Suspension, SweepReport,
    TableStats, TagCount, UpstreamObject, Usage,
};
use crate::config::DatabaseConfig;
use crate::domain::access::{Principal, Role};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};

/// Serialises partition creation between replicas (any constant works; this
/// one spells "cstd" in ASCII).
const PARTITION_LOCK: i64 = 0x6373_7464;
/// Held by the replica that sweeps ("cstw").
const SWEEP_LOCK: i64 = 0x6373_7477;

const META_COLUMNS: &str =
    "id, request_id, tenant_id, key_id, route, method, path, status, model, \
    prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, upstream_ttfb_us, \
    upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, profile, \
    policy_version, zero_data_retention, received_at, content_expires_at, expires_at";

const CONTENT_COLUMNS: &str =
    "record_id, tenant_id, request_body, request_truncated, response_body, \
    response_truncated, received_at, expires_at, sealed";

const INSERT_META: &str = "INSERT INTO record_meta (id, request_id, tenant_id, key_id, route, method, path, \
    status, model, prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, \
    upstream_ttfb_us, upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, \
    profile, policy_version, zero_data_retention, received_at, content_expires_at, expires_at) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
    $8::int[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bool[], $14::text[], $15::bigint[], \
    $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bool[], $21::text[], $22::text[], \
    $23::text[], $24::bool[], $25::timestamptz[], $26::timestamptz[], $27::timestamptz[])";

const INSERT_CONTENT: &str = "INSERT INTO record_content (record_id, tenant_id, request_body, \
    request_truncated, response_body, response_truncated, received_at, expires_at, sealed) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::bool[], $5::bytea[], $6::bool[], \
    $7::timestamptz[], $8::timestamptz[], $9::bool[])";

const INSERT_REVIEW: &str = "INSERT INTO review_items (record_id, tenant_id, severity, action, \
    reasons, content_kept, created_at, updated_at, expires_at) \
    SELECT r, t, s, a, j, k, c, c, e FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::bool[], $7::timestamptz[], $8::timestamptz[]) AS x(r, t, s, a, j, k, c, e)";

/// Appended when a batch may repeat stored records (a retry after an
/// unknown commit outcome, a replay). Speculative insertion costs about a
/// third more per row, so the first attempt goes without it.
const SKIP_STORED: &str = " ON CONFLICT DO NOTHING";

const EXISTING_PARTITIONS: &str = "SELECT c.relname FROM pg_inherits i \
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
    WHERE p.relname IN ('record_meta', 'record_content')";

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&config.url)?.application_name("custodian");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// One statement per table whatever the batch size: columns travel as
    /// arrays and `UNNEST` turns them into rows, so PostgreSQL parses and
    /// plans each statement once per connection, not once per batch size.
    async fn insert_batch(&self, records: &[Record], skip_stored: bool) -> Result<(), sqlx::Error> {
        let suffix = if skip_stored { SKIP_STORED } else { "" };
        let (insert_meta, insert_content) = (
            format!("{INSERT_META}{suffix}"),
            format!("{INSERT_CONTENT}{suffix}"),
        );
        let mut tx = self.pool.begin().await?;
        let metas: Vec<&RecordMeta> = records.iter().map(|r| &r.meta).collect();
        let text = |f: fn(&RecordMeta) -> &str| metas.iter().map(|m| f(m)).collect::<Vec<&str>>();
        sqlx::query(&insert_meta)
            .bind(metas.iter().map(|m| m.id.0).collect::<Vec<_>>())
            .bind(text(|m| &m.request_id))
            .bind(text(|m| &m.tenant.0))
            .bind(text(|m| &m.key_id.0))
            .bind(text(|m| &m.route))
            .bind(text(|m| &m.method))
            .bind(text(|m| &m.path))
            .bind(
                metas
                    .iter()
                    .map(|m| i32::from(m.status))
                    .collect::<Vec<_>>(),
            )
            .bind(metas.iter().map(|m| m.model.as_deref()).collect::<Vec<_>>())
            .bind(
                metas
                    .iter()
                    .map(|m| m.usage.prompt_tokens)
                    .collect::<Vec<_>>(),
            )
            .bind(
                metas
                    .iter()
                    .map(|m| m.usage.completion_tokens)
                    .collect::<Vec<_>>(),
            )
            .bind(
                metas
                    .iter()
                    .map(|m| m.usage.total_tokens)
                    .collect::<Vec<_>>(),
            )
            .bind(metas.iter().map(|m| m.streamed).collect::<Vec<_>>())
            .bind(text(|m| m.outcome.as_str()))
            .bind(metas.iter().map(|m| m.total_us).collect::<Vec<_>>())
            .bind(metas.iter().map(|m| m.upstream_ttfb_us).collect::<Vec<_>>())
            .bind(
                metas
                    .iter()
                    .map(|m| m.upstream_total_us)
                    .collect::<Vec<_>>(),
            )
            .bind(metas.iter().map(|m| m.request_bytes).collect::<Vec<_>>())
            .bind(metas.iter().map(|m| m.response_bytes).collect::<Vec<_>>())
            .bind(metas.iter().map(|m| m.training.usable).collect::<Vec<_>>())
            .bind(text(|m| m.training.basis.as_str()))
            .bind(text(|m| &m.profile))
            .bind(text(|m| &m.policy_version))
            .bind(
                metas
                    .iter()
                    .map(|m| m.zero_data_retention)
                    .collect::<Vec<_>>(),
            )
            .bind(metas.iter().map(|m| m.received_at).collect::<Vec<_>>())
            .bind(
                metas
                    .iter()
                    .map(|m| m.content_expires_at)
                    .collect::<Vec<_>>(),
            )
            .bind(metas.iter().map(|m| m.expires_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;

        let with_content: Vec<(&RecordMeta, &RecordContent)> = records
            .iter()
            .filter_map(|r| r.content.as_ref().map(|c| (&r.meta, c)))
            .collect();
        if !with_content.is_empty() {
            sqlx::query(&insert_content)
                .bind(with_content.iter().map(|(m, _)| m.id.0).collect::<Vec<_>>())
                .bind(
                    with_content
                        .iter()
                        .map(|(m, _)| m.tenant.0.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.request_body.as_slice())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.request_truncated)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.response_body.as_slice())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.response_truncated)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(m, _)| m.received_at)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.expires_at)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    with_content
                        .iter()
                        .map(|(_, c)| c.sealed)
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
        }
        let flagged: Vec<(&RecordMeta, &ReviewFlag)> = records
            .iter()
            .filter_map(|r| r.review.as_ref().map(|f| (&r.meta, f)))
            .collect();
        if !flagged.is_empty() {
            sqlx::query(&format!("{INSERT_REVIEW}{suffix}"))
                .bind(flagged.iter().map(|(m, _)| m.id.0).collect::<Vec<_>>())
                .bind(
                    flagged
                        .iter()
                        .map(|(m, _)| m.tenant.0.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(_, f)| f.severity.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(_, f)| f.action.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(_, f)| f.reasons_json())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(_, f)| f.content_kept)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(m, _)| m.received_at)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    flagged
                        .iter()
                        .map(|(_, f)| f.expires_at)
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

fn has_code(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// True when an insert failed because no partition covers a row.
fn is_missing_partition(e: &sqlx::Error) -> bool {
    has_code(e, "23514")
}

/// True when a record of the batch is already stored.
fn is_duplicate(e: &sqlx::Error) -> bool {
    has_code(e, "23505")
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn cluster_id(&self) -> Option<String> {
        cluster_id(&self.pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Append `event` to the audit chain inside `tx`. Bumping the head row
/// first locks it, so appenders on every replica queue up behind it.
async fn append_audit_in(
    tx: &mut sqlx::PgConnection,
    event: &AuditEvent,
) -> Result<i64, sqlx::Error> {
    let (seq, prev_hash): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
    let entry = AuditEntry::chain(event, seq - 1, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(entry.seq)
    .bind(entry.at)
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
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await?;
    Ok(entry.seq)
}

fn audit_from_row(r: &PgRow) -> Result<AuditEntry, StoreError> {
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

const EXPORT_CANDIDATES: &str =
    "SELECT m.id, m.tenant_id, m.received_at, m.path, m.status, m.outcome, m.streamed, \
    m.training_basis, m.expires_at, c.request_body, c.request_truncated, c.response_body, \
    c.response_truncated, c.expires_at AS content_expires_at, c.sealed, x.export_id \
    FROM record_meta m \
    LEFT JOIN record_content c ON c.record_id = m.id AND c.expires_at = m.content_expires_at \
        AND c.expires_at > $3 \
    LEFT JOIN training_exports x ON x.record_id = m.id \
        AND (x.export_id = $6 OR EXISTS (SELECT 1 FROM training_export_runs r WHERE r.export_id = x.export_id)) \
    WHERE m.training_usable AND NOT m.zero_data_retention \
      AND m.received_at >= $1 AND m.received_at < $2 AND m.expires_at > $3 \
      AND (m.received_at, m.id) > ($4, $5) \
    ORDER BY m.received_at, m.id";

fn candidate_from_row(r: &PgRow) -> Result<ExportCandidate, StoreError> {
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

/// The partitioned tables the sweeper empties, with their record-id column.
const SWEPT_PARENTS: [(&str, &str); 2] = [("record_content", "record_id"), ("record_meta", "id")];

/// True for a row (`t`) that an active legal hold covers; `$1` is now.
fn held(id_column: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.ends_at > $1 \
         AND h.tenant_id = t.tenant_id AND (h.record_id IS NULL OR h.record_id = t.{id_column}))"
    )
}

async fn sweep_locked(
    conn: &mut sqlx::PgConnection,
    now: OffsetDateTime,
    dry_run: bool,
    batch_size: usize,
) -> Result<SweepReport, sqlx::Error> {
    let mut report = SweepReport::default();
    if !dry_run {
        finish_interrupted_drops(conn).await?;
    }
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    for (parent, id_column) in SWEPT_PARENTS {
        for part in partitions_of(conn, parent).await? {
            if part.to > now.date() {
                break;
            }
            let has_held: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {} t WHERE {})",
                part.name,
                held(id_column)
            ))
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            if has_held {
                continue; // its unheld rows go in the batched delete below
            }
            // A dry run counts these rows with the rest below.
            if !dry_run {
                let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", part.name))
                    .fetch_one(&mut *conn)
                    .await?;
                // CONCURRENTLY: inserts and readers of the parent are not
                // blocked; an interrupted detach is finished next time. A
                // long reader (an export) would hold it up: give up after
                // DETACH_WAIT and let the batched delete below do the work.
                if let Err(e) = detach(conn, parent, &part.name).await {
                    if e.as_database_error().and_then(|d| d.code()).as_deref() != Some("55P03") {
                        return Err(e);
                    }
                    tracing::warn!(partition = %part.name, "partition busy; its rows are deleted in batches instead");
                    continue;
                }
                sqlx::query(&format!("DROP TABLE IF EXISTS {}", part.name))
                    .execute(&mut *conn)
                    .await?;
                report.add(parent, u64::try_from(rows).unwrap_or(0));
            }
            report.partitions.push(part.name);
        }
        // Rows past expiry in partitions that are still live (or kept for a hold).
        let expired = format!(
            "FROM {parent} t WHERE t.expires_at <= $1 AND NOT {}",
            held(id_column)
        );
        let key = format!("{id_column}, expires_at");
        let n = remove_rows(conn, parent, &key, &expired, now, dry_run, batch).await?;
        report.add(parent, n);
    }
    let items = format!(
        "FROM review_items t WHERE t.expires_at <= $1 AND NOT {}",
        held("record_id")
    );
    let n = remove_rows(
        conn,
        "review_items",
        "record_id",
        &items,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("review_items", n);
    let marks = "FROM training_exports x WHERE x.expires_at <= $1 \
        AND NOT EXISTS (SELECT 1 FROM record_meta m WHERE m.id = x.record_id)";
    let n = remove_rows(
        conn,
        "training_exports",
        "record_id",
        marks,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("training_exports", n);
    let owners = "FROM upstream_objects x WHERE x.expires_at <= $1";
    let n = remove_rows(
        conn,
        "upstream_objects",
        "route, object_id",
        owners,
        now,
        dry_run,
        batch,
    )
    .await?;
    report.add("upstream_objects", n);
    Ok(report)
}

/// Delete the rows `selection` (a `FROM … WHERE …` with `$1` = now) picks,
/// `batch` at a time by `key` columns, each batch its own statement; or,
/// dry, count them.
async fn remove_rows(
    conn: &mut sqlx::PgConnection,
    table: &str,
    key: &str,
    selection: &str,
    now: OffsetDateTime,
    dry_run: bool,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    if dry_run {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) {selection}"))
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
        return Ok(u64::try_from(rows).unwrap_or(0));
    }
    let delete =
        format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} {selection} LIMIT $2)");
    let mut removed = 0;
    loop {
        let n = sqlx::query(&delete)
            .bind(now)
            .bind(batch)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        removed += n;
        if n == 0 {
            return Ok(removed);
        }
    }
}

/// How long a partition detach may wait for readers of the parent.
const DETACH_WAIT: &str = "10s";

async fn detach(
    conn: &mut sqlx::PgConnection,
    parent: &str,
    part: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET lock_timeout = '{DETACH_WAIT}'"))
        .execute(&mut *conn)
        .await?;
    let result = sqlx::query(&format!(
        "ALTER TABLE {parent} DETACH PARTITION {part} CONCURRENTLY"
    ))
    .execute(&mut *conn)
    .await;
    sqlx::query("RESET lock_timeout")
        .execute(&mut *conn)
        .await?;
    result.map(|_| ())
}

/// Complete what an interrupted sweep left: a detach still pending, or a
/// detached partition not yet dropped.
async fn finish_interrupted_drops(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let pending: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.relname::text, c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE i.inhdetachpending AND p.relname IN ('record_meta', 'record_content')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (parent, part) in pending {
        sqlx::query(&format!(
            "ALTER TABLE {parent} DETACH PARTITION {part} FINALIZE"
        ))
        .execute(&mut *conn)
        .await?;
    }
    let orphans: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition \
         AND (c.relname ~ '^record_content_p[0-9]{8}$' OR c.relname ~ '^record_meta_p[0-9]{6}$')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for part in orphans {
        tracing::info!(partition = %part, "dropping a partition an interrupted sweep detached");
        sqlx::query(&format!("DROP TABLE IF EXISTS {part}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The attached partitions of `parent`, oldest first, with their bounds
/// read back from the names this store gives them.
async fn partitions_of(
    conn: &mut sqlx::PgConnection,
    parent: &str,
) -> Result<Vec<Partition>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1 AND NOT i.inhdetachpending",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await?;
    let mut parts: Vec<Partition> = names.iter().filter_map(|n| parse_partition(n)).collect();
    parts.sort_by_key(|p| p.from);
    Ok(parts)
}

fn parse_partition(name: &str) -> Option<Partition> {
    let digits = |s: &str, range: std::ops::Range<usize>| s.get(range)?.parse::<u32>().ok();
    if let Some(stamp) = name
        .strip_prefix("record_content_p")
        .filter(|s| s.len() == 8)
    {
        let month = Month::try_from(u8::try_from(digits(stamp, 4..6)?).ok()?).ok()?;
        let from = Date::from_calendar_date(
            i32::try_from(digits(stamp, 0..4)?).ok()?,
            month,
            u8::try_from(digits(stamp, 6..8)?).ok()?,
        )
        .ok()?;
        return Some(Partition {
            parent: "record_content",
            name: name.to_owned(),
            from,
            to: from.next_day()?,
        });
    }
    let stamp = name
        .strip_prefix("record_meta_p")
        .filter(|s| s.len() == 6)?;
    let month = Month::try_from(u8::try_from(digits(stamp, 4..6)?).ok()?).ok()?;
    let from =
        Date::from_calendar_date(i32::try_from(digits(stamp, 0..4)?).ok()?, month, 1).ok()?;
    Some(Partition {
        parent: "record_meta",
        name: name.to_owned(),
        from,
        to: next_month(from),
    })
}

fn consent_from_row(r: &PgRow) -> Result<ConsentEvent, StoreError> {
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

fn meta_from_row(r: &PgRow) -> Result<RecordMeta, StoreError> {
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
    })
}

fn content_from_row(r: &PgRow) -> Result<RecordContent, StoreError> {
    Ok(RecordContent {
        request_body: r.try_get("request_body")?,
        request_truncated: r.try_get("request_truncated")?,
        response_body: r.try_get("response_body")?,
        response_truncated: r.try_get("response_truncated")?,
        expires_at: r.try_get("expires_at")?,
        sealed: r.try_get("sealed")?,
    })
}

/// One range partition of `record_content` (a day) or `record_meta` (a month).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partition {
    parent: &'static str,
    name: String,
    from: Date,
    to: Date,
}

impl Partition {
    fn create_sql(&self) -> String {
        // Names and bounds are generated from dates, never from input.
        format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00')",
            self.name, self.parent, self.from, self.to
        )
    }
}

/// Daily content partitions and monthly metadata partitions from the day
/// of `now` through the given horizons. Records are written with an expiry
/// after now, so none goes into an earlier partition (and the insert path
/// creates one on demand if it must).
fn partitions_wanted(
    now: OffsetDateTime,
    content_until: OffsetDateTime,
    metadata_until: OffsetDateTime,
) -> Vec<Partition> {
    let mut out = Vec::new();
    let start = now.date();
    let mut day = start;
    while day <= content_until.date() {
        let Some(next) = day.next_day() else { break };
        out.push(Partition {
            parent: "record_content",
            name: format!("record_content_p{}", day_stamp(day)),
            from: day,
            to: next,
        });
        day = next;
    }
    let mut month = first_of_month(start);
    while month <= metadata_until.date() {
        let next = next_month(month);
        out.push(Partition {
            parent: "record_meta",
            name: format!(
                "record_meta_p{:04}{:02}",
                month.year(),
                u8::from(month.month())
            ),
            from: month,
            to: next,
        });
        month = next;
    }
    out
}

fn day_stamp(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn next_month(d: Date) -> Date {
    let (year, month) = match d.month() {
        Month::December => (d.year() + 1, Month::January),
        m => (d.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(d)
}

const ITEM_COLUMNS: &str =
    "record_id, tenant_id, severity, action, reasons, content_kept, status, \
    assignee, resolution, notes, created_at, updated_at, expires_at";

const PRINCIPAL_COLUMNS: &str = "id, name, role, created_at, expires_at, revoked_at";

fn item_from_row(r: &PgRow) -> Result<ReviewItem, StoreError> {
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
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn principal_from_row(r: &PgRow) -> Result<Principal, StoreError> {
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

/// Add a suspension and its audit entry inside `tx`. Returns its id.
async fn insert_suspension_in(
    tx: &mut sqlx::PgConnection,
    s: &NewSuspension,
    at: OffsetDateTime,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO suspensions (tenant_id, key_id, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&s.tenant.0)
    .bind(s.key_id.as_deref())
    .bind(&s.reason)
    .bind(&s.created_by)
    .bind(at)
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

fn object_from_row(r: &PgRow) -> Result<UpstreamObject, StoreError> {
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

/// `system_identifier` of the cluster behind `pool`, if the role may read it.
pub async fn cluster_id(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
        .fetch_one(pool)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    #[test]
    fn partition_names_read_back_as_their_bounds() {
        for p in partitions_wanted(
            datetime!(2026-12-30 10:00 UTC),
            datetime!(2027-01-02 00:00 UTC),
            datetime!(2027-03-01 00:00 UTC),
        ) {
            assert_eq!(parse_partition(&p.name), Some(p.clone()));
        }
        for bad in [
            "record_content_p2026133",
            "record_meta_p202613",
            "other_p20260101",
            "record_content_p20260230",
        ] {
            assert_eq!(parse_partition(bad), None, "{bad}");
        }
    }

    #[test]
    fn partitions_cover_today_through_the_horizons() {
        let now = datetime!(2026-12-30 10:00 UTC);
        let parts = partitions_wanted(now, now + Duration::days(3), now + Duration::days(40));
        let content: Vec<_> = parts
            .iter()
            .filter(|p| p.parent == "record_content")
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            content,
            [
                "record_content_p20261230",
                "record_content_p20261231",
                "record_content_p20270101",
                "record_content_p20270102"
            ]
        );
        let meta: Vec<_> = parts
            .iter()
            .filter(|p| p.parent == "record_meta")
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            meta,
            [
                "record_meta_p202612",
                "record_meta_p202701",
                "record_meta_p202702"
            ]
        );
        let dec = parts
            .iter()
            .find(|p| p.name == "record_meta_p202612")
            .unwrap();
        assert!(dec
            .create_sql()
            .contains("FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"));
    }
}
