//! SQLite: retention: partitions, the sweep, legal holds.

use super::*;
use crate::store::retention::erase_sql;
use crate::store::{Erased, ErasedFile, Erasure, KeptByHold, RetentionStore};

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn prepare_partitions(
        &self,
        _: OffsetDateTime,
        _: OffsetDateTime,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Ok(())
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

    async fn erase_tenant(
        &self,
        erasure: &Erasure,
        audit: &AuditEvent,
    ) -> Result<Erased, StoreError> {
        erase_tenant_in(&self.pool, erasure, audit).await
    }
}

/// One erasure statement on `tx`: the rows it removed.
async fn erase_step(
    tx: &mut sqlx::SqliteConnection,
    sql: &str,
    e: &Erasure,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sql)
        .bind(&e.tenant.0)
        .bind(to_micros(e.at))
        .bind(e.end_user_hash.as_deref().unwrap_or_default())
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

pub(super) async fn erase_tenant_in(
    pool: &SqlitePool,
    e: &Erasure,
    audit: &AuditEvent,
) -> Result<Erased, StoreError> {
    let mut tx = pool.begin().await?;
    let mut erased = Erased::default();
    for r in sqlx::query(&erase_sql::KEPT.replace('$', "?"))
        .bind(&e.tenant.0)
        .bind(to_micros(e.at))
        .fetch_all(&mut *tx)
        .await?
    {
        erased.kept.push(KeptByHold {
            hold_id: r.try_get(0)?,
            reason: r.try_get(1)?,
            record: r.try_get::<Option<Uuid>, _>(2)?.map(|u| u.to_string()),
            content_rows_kept: r.try_get(3)?,
        });
    }
    erased.content_rows = erase_step(&mut tx, &erase_sql::CONTENT.replace('$', "?"), e).await?;
    erased.review_items = erase_step(&mut tx, &erase_sql::REVIEW.replace('$', "?"), e).await?;
    for r in sqlx::query(&erase_sql::FILES.replace('$', "?"))
        .bind(&e.tenant.0)
        .bind(to_micros(e.at))
        .bind(e.end_user_hash.as_deref().unwrap_or_default())
        .fetch_all(&mut *tx)
        .await?
    {
        erased.files.push(ErasedFile {
            object_key: r.try_get(0)?,
            record_id: RecordId(r.try_get(1)?),
        });
    }
    erased.file_copies = erased.files.len() as u64;
    if e.include_metadata {
        erased.export_marks =
            erase_step(&mut tx, &erase_sql::EXPORT_MARKS.replace('$', "?"), e).await?;
        if e.end_user_hash.is_none() {
            // Objects are the tenant's, not any one end user's.
            erased.upstream_object_rows = sqlx::query(&erase_sql::OBJECTS.replace('$', "?"))
                .bind(&e.tenant.0)
                .bind(to_micros(e.at))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        erased.metadata_rows = erase_step(&mut tx, &erase_sql::META.replace('$', "?"), e).await?;
    }
    let mut audit = audit.clone();
    audit.details = serde_json::json!({
        "details": audit.details,
        "include_metadata": e.include_metadata,
        "end_user_hash": e.end_user_hash,
        "erased": &erased,
    });
    append_audit_in(&mut tx, &audit).await?;
    tx.commit().await?;
    Ok(erased)
}
