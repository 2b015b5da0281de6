//! SQLite store: the embedded, zero-set-up default (single node, WAL mode).

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
    tag_count, AuditFilter, ExportCandidate, ExportQuery, FileCopy, ItemChange, LegalHold, NewHold,
    NewPrincipal, NewSuspension, Record, RecordContent, RecordMeta, ReviewFilter, ReviewFlag,
    ReviewItem, Store, StoreError, StoredConsentEvent, StoredContent, Suspension, SweepReport,
    TableStats, TagCount, UpstreamObject, Usage,
};
use crate::audit::{AuditEntry, AuditEvent};
use crate::config::DatabaseConfig;
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};
use crate::review::access::{Principal, Role};

const META_COLUMNS: &str =
    "id, request_id, tenant_id, key_id, route, method, path, status, model, \
    prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, upstream_ttfb_us, \
    upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, profile, \
    policy_version, zero_data_retention, received_at, content_expires_at, expires_at";

const CONTENT_COLUMNS: &str =
    "record_id, tenant_id, request_body, request_truncated, response_body, \
    response_truncated, received_at, expires_at, sealed";

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

    async fn prepare_partitions(
        &self,
        _: OffsetDateTime,
        _: OffsetDateTime,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "INSERT OR IGNORE INTO record_meta ({META_COLUMNS}) "
        ));
        qb.push_values(records, |mut b, r| {
            let m = &r.meta;
            b.push_bind(m.id.0)
                .push_bind(&m.request_id)
                .push_bind(&m.tenant.0)
                .push_bind(&m.key_id.0)
                .push_bind(&m.route)
                .push_bind(&m.method)
                .push_bind(&m.path)
                .push_bind(i64::from(m.status))
                .push_bind(&m.model)
                .push_bind(m.usage.prompt_tokens)
                .push_bind(m.usage.completion_tokens)
                .push_bind(m.usage.total_tokens)
                .push_bind(m.streamed)
                .push_bind(m.outcome.as_str())
                .push_bind(m.total_us)
                .push_bind(m.upstream_ttfb_us)
                .push_bind(m.upstream_total_us)
                .push_bind(m.request_bytes)
                .push_bind(m.response_bytes)
                .push_bind(m.training.usable)
                .push_bind(m.training.basis.as_str())
                .push_bind(&m.profile)
                .push_bind(&m.policy_version)
                .push_bind(m.zero_data_retention)
                .push_bind(to_micros(m.received_at))
                .push_bind(m.content_expires_at.map(to_micros))
                .push_bind(to_micros(m.expires_at));
        });
        qb.build().execute(&mut *tx).await?;
        let with_content: Vec<(&RecordMeta, &RecordContent)> = records
            .iter()
            .filter_map(|r| r.content.as_ref().map(|c| (&r.meta, c)))
            .collect();
        if !with_content.is_empty() {
            let mut qb = QueryBuilder::<Sqlite>::new(format!(
                "INSERT OR IGNORE INTO record_content ({CONTENT_COLUMNS}) "
            ));
            qb.push_values(with_content, |mut b, (m, c)| {
                b.push_bind(m.id.0)
                    .push_bind(&m.tenant.0)
                    .push_bind(&c.request_body)
                    .push_bind(c.request_truncated)
                    .push_bind(&c.response_body)
                    .push_bind(c.response_truncated)
                    .push_bind(to_micros(m.received_at))
                    .push_bind(to_micros(c.expires_at))
                    .push_bind(c.sealed);
            });
            qb.build().execute(&mut *tx).await?;
        }
        let flagged: Vec<(&RecordMeta, &ReviewFlag)> = records
            .iter()
            .filter_map(|r| r.review.as_ref().map(|f| (&r.meta, f)))
            .collect();
        if !flagged.is_empty() {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO review_items (record_id, tenant_id, severity, action, \
                 reasons, content_kept, created_at, updated_at, expires_at) ",
            );
            qb.push_values(flagged, |mut b, (m, f)| {
                b.push_bind(m.id.0)
                    .push_bind(&m.tenant.0)
                    .push_bind(f.severity.as_str())
                    .push_bind(f.action.as_str())
                    .push_bind(f.reasons_json())
                    .push_bind(f.content_kept)
                    .push_bind(to_micros(m.received_at))
                    .push_bind(to_micros(m.received_at))
                    .push_bind(to_micros(f.expires_at));
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_record(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {META_COLUMNS} FROM record_meta WHERE id = ?");
        let Some(row) = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let meta = meta_from_row(&row)?;
        let sql = format!("SELECT {CONTENT_COLUMNS} FROM record_content WHERE record_id = ?");
        let content = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| content_from_row(&row))
            .transpose()?;
        Ok(Some(Record {
            meta,
            content,
            review: None,
        }))
    }

    async fn list_records(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<RecordMeta>, StoreError> {
        let sql = format!(
            "SELECT {META_COLUMNS} FROM record_meta WHERE tenant_id = ? ORDER BY received_at DESC, id DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(&tenant.0)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(meta_from_row).collect()
    }

    async fn content_page(
        &self,
        after: Option<RecordId>,
        limit: i64,
    ) -> Result<Vec<StoredContent>, StoreError> {
        let sql = format!(
            "SELECT {CONTENT_COLUMNS} FROM record_content \
             WHERE ?1 IS NULL OR record_id > ?1 ORDER BY record_id LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(after.map(|id| id.0))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredContent {
                    record: RecordId(r.try_get("record_id")?),
                    tenant: TenantId(r.try_get("tenant_id")?),
                    content: content_from_row(r)?,
                })
            })
            .collect()
    }

    async fn count_records(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM record_meta")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn record_consent(
        &self,
        e: &ConsentEvent,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction holds the write
        // lock before it reads the audit head.
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO consent_events (tenant_id, opted_in, effective_at, recorded_at, actor, source, note) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&e.tenant.0)
        .bind(e.opted_in)
        .bind(to_micros(e.effective_at))
        .bind(to_micros(e.recorded_at))
        .bind(&e.actor)
        .bind(&e.source)
        .bind(&e.note)
        .fetch_one(&mut *tx)
        .await?;
        let mut audit = audit.clone();
        audit.subject = Some(format!("consent_event:{seq}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn consent_events_after(
        &self,
        after: i64,
    ) -> Result<Vec<StoredConsentEvent>, StoreError> {
        let sql = format!("SELECT {CONSENT_COLUMNS} FROM consent_events WHERE id > ? ORDER BY id");
        let rows = sqlx::query(&sql).bind(after).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredConsentEvent {
                    seq: r.try_get("id")?,
                    event: consent_from_row(r)?,
                })
            })
            .collect()
    }

    async fn consent_history(&self, tenant: &TenantId) -> Result<Vec<ConsentEvent>, StoreError> {
        let sql =
            format!("SELECT {CONSENT_COLUMNS} FROM consent_events WHERE tenant_id = ? ORDER BY id");
        let rows = sqlx::query(&sql)
            .bind(&tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash \
             FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    fn export_candidates(
        &self,
        q: ExportQuery,
    ) -> BoxStream<'_, Result<ExportCandidate, StoreError>> {
        let (after_at, after_id) = q.after.unwrap_or((q.since, RecordId(Uuid::nil())));
        sqlx::query(EXPORT_CANDIDATES)
            .bind(to_micros(q.since))
            .bind(to_micros(q.until))
            .bind(to_micros(q.now))
            .bind(to_micros(after_at))
            .bind(after_id.0)
            .bind(q.export_id)
            .fetch(&self.pool)
            .map(|row| candidate_from_row(&row?))
            .boxed()
    }

    async fn training_tag_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<TagCount>, StoreError> {
        let rows: Vec<(bool, String, i64)> = sqlx::query_as(
            "SELECT training_usable, training_basis, count(*) FROM record_meta \
             WHERE received_at >= ? AND received_at < ? AND expires_at > ? \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(to_micros(since))
        .bind(to_micros(until))
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(tag_count).collect()
    }

    async fn sweep(
        &self,
        now: OffsetDateTime,
        dry_run: bool,
        batch_size: usize,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
        for (table, expired) in sweep_selections() {
            if dry_run {
                let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) {expired}"))
                    .bind(to_micros(now))
                    .fetch_one(&self.pool)
                    .await?;
                report.rows.insert(table, u64::try_from(rows).unwrap_or(0));
                continue;
            }
            // Each batch is its own short transaction: the writer is never
            // kept waiting behind one huge delete.
            let delete =
                format!("DELETE FROM {table} WHERE rowid IN (SELECT t.rowid {expired} LIMIT ?2)");
            loop {
                let started = std::time::Instant::now();
                let n = sqlx::query(&delete)
                    .bind(to_micros(now))
                    .bind(batch.min(MAX_SWEEP_BATCH))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                *report.rows.entry(table).or_default() += n;
                if n == 0 {
                    break;
                }
                // SQLite has one writer: leave it free as long as the batch
                // held it, so the record writer is never starved.
                tokio::time::sleep(started.elapsed().max(MIN_SWEEP_PAUSE)).await;
            }
        }
        Ok(report)
    }

    async fn retention_stats(&self, now: OffsetDateTime) -> Result<Vec<TableStats>, StoreError> {
        let mut out = Vec::new();
        for table in ["record_content", "record_meta"] {
            let past_expiry: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} WHERE expires_at <= ?"
            ))
            .bind(to_micros(now))
            .fetch_one(&self.pool)
            .await?;
            let oldest: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT received_at FROM {table} WHERE expires_at > ? ORDER BY expires_at LIMIT 1"
            ))
            .bind(to_micros(now))
            .fetch_optional(&self.pool)
            .await?;
            out.push(TableStats {
                table,
                past_expiry,
                oldest_live_received_at: oldest.map(from_micros).transpose()?,
            });
        }
        Ok(out)
    }

    async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_hold(&self, h: &NewHold, audit: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO legal_holds (tenant_id, record_id, reason, created_by, created_at, ends_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&h.tenant.0)
        .bind(h.record.map(|r| r.0))
        .bind(&h.reason)
        .bind(&h.created_by)
        .bind(to_micros(h.created_at))
        .bind(to_micros(h.ends_at))
        .fetch_one(&mut *tx)
        .await?;
        let mut audit = audit.clone();
        audit.subject = Some(format!("legal_hold:{id}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn release_hold(
        &self,
        id: i64,
        released_by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let released = sqlx::query(
            "UPDATE legal_holds SET released_at = ?2, released_by = ?3 \
             WHERE id = ?1 AND released_at IS NULL AND ends_at > ?2",
        )
        .bind(id)
        .bind(to_micros(at))
        .bind(released_by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if released {
            let mut audit = audit.clone();
            audit.subject = Some(format!("legal_hold:{id}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn held_content_days(
        &self,
        now: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<i32>, StoreError> {
        // Expiry instants are microseconds since the epoch (never negative).
        let sql = format!(
            "SELECT DISTINCT t.expires_at / 86400000000 FROM record_content t \
             WHERE t.expires_at < ?2 AND {}",
            held("record_id")
        );
        let days: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(to_micros(now))
            .bind(to_micros(before))
            .fetch_all(&self.pool)
            .await?;
        Ok(days
            .into_iter()
            .filter_map(|d| i32::try_from(d).ok())
            .collect())
    }

    async fn list_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, record_id, reason, created_by, created_at, ends_at, \
             released_at, released_by FROM legal_holds ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let released_at: Option<i64> = r.try_get("released_at")?;
                Ok(LegalHold {
                    id: r.try_get("id")?,
                    tenant: TenantId(r.try_get("tenant_id")?),
                    record: r.try_get::<Option<Uuid>, _>("record_id")?.map(RecordId),
                    reason: r.try_get("reason")?,
                    created_by: r.try_get("created_by")?,
                    created_at: from_micros(r.try_get("created_at")?)?,
                    ends_at: from_micros(r.try_get("ends_at")?)?,
                    released_at: released_at.map(from_micros).transpose()?,
                    released_by: r.try_get("released_by")?,
                })
            })
            .collect()
    }

    async fn review_item(&self, record: RecordId) -> Result<Option<ReviewItem>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM review_items WHERE record_id = ?1"
        ))
        .bind(record.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn list_review_items(&self, f: &ReviewFilter) -> Result<Vec<ReviewItem>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "SELECT {ITEM_COLUMNS} FROM review_items t WHERE TRUE"
        ));
        if let Some(v) = &f.status {
            q.push(" AND status = ").push_bind(v.clone());
        }
        if let Some(v) = &f.tenant {
            q.push(" AND tenant_id = ").push_bind(v.clone());
        }
        if let Some(v) = f.severity {
            q.push(" AND severity = ").push_bind(v.as_str());
        }
        if let Some(v) = &f.assignee {
            q.push(" AND assignee = ").push_bind(v.clone());
        }
        if let Some(rule) = &f.rule {
            let needle = format!("%\"rule\":{}%", serde_json::Value::from(rule.as_str()));
            q.push(" AND reasons LIKE ").push_bind(needle);
        }
        if let Some(v) = f.since {
            q.push(" AND created_at >= ").push_bind(to_micros(v));
        }
        if let Some(v) = f.until {
            q.push(" AND created_at < ").push_bind(to_micros(v));
        }
        if let Some(now) = f.live_at {
            q.push(" AND (t.expires_at > ")
                .push_bind(to_micros(now))
                .push(" OR EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.ends_at > ")
                .push_bind(to_micros(now))
                .push(" AND h.tenant_id = t.tenant_id AND (h.record_id IS NULL OR h.record_id = t.record_id)))");
        }
        if let Some((at, id)) = f.after {
            q.push(" AND (created_at, record_id) > (")
                .push_bind(to_micros(at))
                .push(", ")
                .push_bind(id.0)
                .push(")");
        }
        q.push(" ORDER BY created_at, record_id LIMIT ")
            .push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn read_review_item(
        &self,
        record: RecordId,
        audit: &AuditEvent,
    ) -> Result<Option<(ReviewItem, Record)>, StoreError> {
        // The audit entry commits before any content is read: no entry, no data.
        let mut tx = self.pool.begin().await?;
        let item = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM review_items WHERE record_id = ?1"
        ))
        .bind(record.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(item) = item.as_ref().map(item_from_row).transpose()? else {
            return Ok(None);
        };
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{record}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        let Some(stored) = self.get_record(record).await? else {
            return Ok(None);
        };
        Ok(Some((item, stored)))
    }

    async fn claim_next_item(
        &self,
        assignee: &str,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<ReviewItem>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE review_items SET status = 'claimed', assignee = ?1, updated_at = ?2 \
             WHERE record_id = (SELECT record_id FROM review_items t \
             WHERE status = 'open' AND (t.expires_at > ?2 OR EXISTS (SELECT 1 FROM legal_holds h \
             WHERE h.released_at IS NULL AND h.ends_at > ?2 AND h.tenant_id = t.tenant_id \
             AND (h.record_id IS NULL OR h.record_id = t.record_id))) \
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
             WHEN 'medium' THEN 2 ELSE 3 END, created_at, record_id LIMIT 1) \
             RETURNING {ITEM_COLUMNS}"
        ))
        .bind(assignee)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(item) = row.as_ref().map(item_from_row).transpose()? else {
            return Ok(None);
        };
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{}", item.record_id));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(Some(item))
    }

    async fn update_review_item(
        &self,
        record: RecordId,
        change: &ItemChange,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writing first takes the row (PostgreSQL) or the database (SQLite)
        // before the notes are read back.
        let touched = sqlx::query(
            "UPDATE review_items SET updated_at = ?2 \
             WHERE record_id = ?1 AND status <> 'resolved'",
        )
        .bind(record.0)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if touched != 1 {
            return Ok(false);
        }
        match change {
            ItemChange::Assign(name) => {
                sqlx::query(
                    "UPDATE review_items SET assignee = ?2, \
                     status = CASE WHEN status = 'open' THEN 'claimed' ELSE status END \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            ItemChange::Note { author, text } => {
                let notes: String =
                    sqlx::query_scalar("SELECT notes FROM review_items WHERE record_id = ?1")
                        .bind(record.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let notes = super::append_note(&notes, author, text, now);
                sqlx::query("UPDATE review_items SET notes = ?2 WHERE record_id = ?1")
                    .bind(record.0)
                    .bind(notes)
                    .execute(&mut *tx)
                    .await?;
            }
            ItemChange::Resolve {
                resolution,
                suspension,
                ..
            } => {
                sqlx::query(
                    "UPDATE review_items SET status = 'resolved', resolution = ?2 \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(resolution)
                .execute(&mut *tx)
                .await?;
                if let Some(s) = suspension {
                    insert_suspension_in(&mut tx, s, now).await?;
                }
            }
        }
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{record}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn review_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, severity, count(*) FROM review_items WHERE expires_at > ?1 \
             GROUP BY status, severity ORDER BY status, severity",
        )
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash \
             FROM audit_log WHERE seq > ",
        );
        q.push_bind(f.after);
        if let Some(v) = &f.actor {
            q.push(" AND actor = ").push_bind(v.clone());
        }
        if let Some(v) = &f.action {
            q.push(" AND action = ").push_bind(v.clone());
        }
        if let Some(v) = &f.subject {
            q.push(" AND subject = ").push_bind(v.clone());
        }
        if let Some(v) = f.since {
            q.push(" AND at >= ").push_bind(to_micros(v));
        }
        if let Some(v) = f.until {
            q.push(" AND at < ").push_bind(to_micros(v));
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn add_principal(&self, p: &NewPrincipal, audit: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO principals (name, role, token_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(&p.name)
        .bind(p.role.as_str())
        .bind(&p.token_hash)
        .bind(to_micros(p.created_at))
        .bind(p.expires_at.map(to_micros))
        .fetch_one(&mut *tx)
        .await?;
        let mut audit = audit.clone();
        audit.subject = Some(format!("principal:{}", p.name));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn principal_by_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE token_hash = ?1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(principal_from_row).collect()
    }

    async fn revoke_principal(
        &self,
        name: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE principals SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(to_micros(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            let mut audit = audit.clone();
            audit.subject = Some(format!("principal:{name}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    async fn add_suspension(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
        reason: &str,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let suspension = NewSuspension {
            tenant: tenant.clone(),
            key_id: key.map(str::to_owned),
            reason: reason.to_owned(),
            created_by: by.to_owned(),
            audit: audit.clone(),
        };
        let id = insert_suspension_in(&mut tx, &suspension, at).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn lift_suspension(
        &self,
        id: i64,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query(
            "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3 \
             WHERE id = ?1 AND lifted_at IS NULL",
        )
        .bind(id)
        .bind(to_micros(at))
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if lifted {
            let mut audit = audit.clone();
            audit.subject = Some(format!("suspension:{id}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }

    async fn list_suspensions(&self) -> Result<Vec<Suspension>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, key_id, reason, created_by, created_at, lifted_at, lifted_by \
             FROM suspensions ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Suspension {
                    id: r.try_get("id")?,
                    tenant: TenantId(r.try_get("tenant_id")?),
                    key_id: r.try_get("key_id")?,
                    reason: r.try_get("reason")?,
                    created_by: r.try_get("created_by")?,
                    created_at: from_micros(r.try_get("created_at")?)?,
                    lifted_at: r
                        .try_get::<Option<i64>, _>("lifted_at")?
                        .map(from_micros)
                        .transpose()?,
                    lifted_by: r.try_get("lifted_by")?,
                })
            })
            .collect()
    }

    async fn add_review_flag(
        &self,
        record: RecordId,
        tenant: &TenantId,
        flag: &ReviewFlag,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writing first takes the row (or the database) before reading it.
        let existing = sqlx::query(
            "UPDATE review_items SET updated_at = ?2 WHERE record_id = ?1 \
             RETURNING severity, action, reasons",
        )
        .bind(record.0)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        match existing {
            Some(r) => {
                let (severity, action, verdicts) = super::review_fields(
                    &r.try_get::<String, _>("severity")?,
                    &r.try_get::<String, _>("action")?,
                    &r.try_get::<String, _>("reasons")?,
                )?;
                let merged = flag.merged_with(severity, action, verdicts);
                sqlx::query(
                    "UPDATE review_items SET severity = ?2, action = ?3, reasons = ?4 \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(merged.severity.as_str())
                .bind(merged.action.as_str())
                .bind(merged.reasons_json())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO review_items (record_id, tenant_id, severity, action, reasons, \
                     content_kept, created_at, updated_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                )
                .bind(record.0)
                .bind(&tenant.0)
                .bind(flag.severity.as_str())
                .bind(flag.action.as_str())
                .bind(flag.reasons_json())
                .bind(flag.content_kept)
                .bind(to_micros(now))
                .bind(to_micros(flag.expires_at))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_objects(&self, objects: &[UpstreamObject]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for o in objects {
            sqlx::query(
                "INSERT INTO upstream_objects (route, object_id, kind, tenant_id, record_id, \
                 collection, created_at, purge_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (route, object_id) DO NOTHING",
            )
            .bind(&o.route)
            .bind(&o.object_id)
            .bind(&o.kind)
            .bind(&o.tenant.0)
            .bind(o.record_id.0)
            .bind(&o.collection)
            .bind(to_micros(o.created_at))
            .bind(o.purge_at.map(to_micros))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn objects(
        &self,
        route: &str,
        ids: &[String],
    ) -> Result<Vec<UpstreamObject>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {OBJECT_COLUMNS} FROM upstream_objects WHERE route = "
        ));
        q.push_bind(route).push(" AND object_id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(object_from_row).collect()
    }

    async fn objects_to_purge(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<UpstreamObject>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM upstream_objects \
             WHERE purge_at <= ?1 AND deleted_at IS NULL ORDER BY purge_at LIMIT ?2"
        ))
        .bind(to_micros(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(object_from_row).collect()
    }

    async fn mark_object_deleted(
        &self,
        route: &str,
        object_id: &str,
        at: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError> {
        let marked = sqlx::query(
            "UPDATE upstream_objects SET deleted_at = ?3, expires_at = ?4 \
             WHERE route = ?1 AND object_id = ?2 AND deleted_at IS NULL",
        )
        .bind(route)
        .bind(object_id)
        .bind(to_micros(at))
        .bind(to_micros(at + keep_for))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(marked == 1)
    }

    async fn insert_file_copy(&self, c: &FileCopy) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO file_copies (tenant_id, file_id, object_key, filename, purpose, bytes, \
             sha256, record_id, created_at, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (tenant_id, file_id) DO UPDATE SET object_key = excluded.object_key, \
             filename = excluded.filename, bytes = excluded.bytes, sha256 = excluded.sha256, \
             record_id = excluded.record_id, created_at = excluded.created_at, sealed = excluded.sealed",
        )
        .bind(&c.tenant.0)
        .bind(&c.file_id)
        .bind(&c.object_key)
        .bind(&c.filename)
        .bind(&c.purpose)
        .bind(c.bytes)
        .bind(&c.sha256)
        .bind(c.record_id.0)
        .bind(to_micros(c.created_at))
        .bind(c.sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn file_copy_records(&self) -> Result<Vec<RecordId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT record_id FROM file_copies")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(RecordId).collect())
    }

    async fn file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
    ) -> Result<Option<FileCopy>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, file_id, object_key, filename, purpose, bytes, sha256, record_id, \
             created_at, sealed FROM file_copies WHERE tenant_id = ?1 AND file_id = ?2",
        )
        .bind(&tenant.0)
        .bind(file_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(FileCopy {
            tenant: TenantId(r.try_get("tenant_id")?),
            file_id: r.try_get("file_id")?,
            object_key: r.try_get("object_key")?,
            filename: r.try_get("filename")?,
            purpose: r.try_get("purpose")?,
            bytes: r.try_get("bytes")?,
            sha256: r.try_get("sha256")?,
            record_id: RecordId(r.try_get("record_id")?),
            created_at: from_micros(r.try_get("created_at")?)?,
            sealed: r.try_get("sealed")?,
        }))
    }

    async fn delete_file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM file_copies WHERE tenant_id = ?1 AND file_id = ?2")
            .bind(&tenant.0)
            .bind(file_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if removed {
            let mut audit = audit.clone();
            audit.subject = Some(format!("file:{file_id}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn finish_export(&self, export_id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO training_export_runs (export_id, finished_at) VALUES (?1, ?2) \
             ON CONFLICT (export_id) DO NOTHING",
        )
        .bind(export_id)
        .bind(to_micros(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn mark_exported(
        &self,
        export_id: Uuid,
        at: OffsetDateTime,
        records: &[(RecordId, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in records.chunks(200) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO training_exports (record_id, export_id, exported_at, expires_at) ",
            );
            q.push_values(chunk, |mut b, (id, expires_at)| {
                b.push_bind(id.0)
                    .push_bind(export_id)
                    .push_bind(to_micros(at))
                    .push_bind(to_micros(*expires_at));
            });
            q.push(
                " ON CONFLICT (record_id) DO UPDATE SET export_id = excluded.export_id, \
                 exported_at = excluded.exported_at",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
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
fn sweep_selections() -> [(&'static str, String); 5] {
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
    c.response_truncated, c.expires_at AS content_expires_at, c.sealed, x.export_id \
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
