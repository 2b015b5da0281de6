//! PostgreSQL: retention: partitions, the sweep, legal holds.

use super::*;
use crate::store::retention::erase_sql;
use crate::store::{Erased, ErasedFile, Erasure, KeptByHold, RetentionStore};

#[async_trait]
impl RetentionStore for PgStore {
    async fn prepare_partitions(
        &self,
        now: OffsetDateTime,
        content_until: OffsetDateTime,
        metadata_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let existing: HashSet<String> = sqlx::query_scalar(EXISTING_PARTITIONS)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
        let wanted = partitions_wanted(now, content_until, metadata_until);
        let missing: Vec<&Partition> = wanted
            .iter()
            .filter(|p| !existing.contains(&p.name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        for p in missing {
            sqlx::query(&p.create_sql()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn sweep(
        &self,
        now: OffsetDateTime,
        dry_run: bool,
        batch_size: usize,
    ) -> Result<SweepReport, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SWEEP_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(SweepReport {
                skipped_locked: true,
                ..SweepReport::default()
            });
        }
        let result = sweep_locked(&mut conn, now, dry_run, batch_size).await;
        // A connection that broke mid-sweep released the lock with its session.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SWEEP_LOCK)
            .execute(&mut *conn)
            .await;
        Ok(result?)
    }

    async fn retention_stats(&self, now: OffsetDateTime) -> Result<Vec<TableStats>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::new();
        for (table, _) in SWEPT_PARENTS {
            let past_expiry: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} WHERE expires_at <= $1"
            ))
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            // Partitions in expiry order: the first with a live row has it.
            let mut oldest = None;
            for part in partitions_of(&mut conn, table).await? {
                oldest = sqlx::query_scalar(&format!(
                    "SELECT received_at FROM {} WHERE expires_at > $1 ORDER BY expires_at LIMIT 1",
                    part.name
                ))
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if oldest.is_some() {
                    break;
                }
            }
            out.push(TableStats {
                table,
                past_expiry,
                oldest_live_received_at: oldest,
            });
        }
        Ok(out)
    }

    async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_hold(&self, h: &NewHold, audit: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Wait out a running sweep: it checked for holds before dropping a
        // partition, and must not drop one this hold covers.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SWEEP_LOCK)
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO legal_holds (tenant_id, record_id, reason, created_by, created_at, ends_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&h.tenant.0)
        .bind(h.record.map(|r| r.0))
        .bind(&h.reason)
        .bind(&h.created_by)
        .bind(h.created_at)
        .bind(h.ends_at)
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
            "UPDATE legal_holds SET released_at = $2, released_by = $3 \
             WHERE id = $1 AND released_at IS NULL AND ends_at > $2",
        )
        .bind(id)
        .bind(at)
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
        let sql = format!(
            "SELECT DISTINCT floor(extract(epoch FROM t.expires_at) / 86400)::int \
             FROM record_content t WHERE t.expires_at < $2 AND {}",
            held("record_id")
        );
        Ok(sqlx::query_scalar(&sql)
            .bind(now)
            .bind(before)
            .fetch_all(&self.pool)
            .await?)
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
                Ok(LegalHold {
                    id: r.try_get("id")?,
                    tenant: TenantId(r.try_get("tenant_id")?),
                    record: r.try_get::<Option<Uuid>, _>("record_id")?.map(RecordId),
                    reason: r.try_get("reason")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                    ends_at: r.try_get("ends_at")?,
                    released_at: r.try_get("released_at")?,
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
    tx: &mut sqlx::PgConnection,
    sql: &str,
    e: &Erasure,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(sql)
        .bind(&e.tenant.0)
        .bind(e.at)
        .bind(e.end_user_hash.as_deref().unwrap_or_default())
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

pub(super) async fn erase_tenant_in(
    pool: &PgPool,
    e: &Erasure,
    audit: &AuditEvent,
) -> Result<Erased, StoreError> {
    let mut tx = pool.begin().await?;
    // As `add_hold` does: a hold placed meanwhile waits for the erasure to
    // commit, so no statement of it sees a hold the others do not.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut erased = Erased::default();
    for r in sqlx::query(erase_sql::KEPT)
        .bind(&e.tenant.0)
        .bind(e.at)
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
    erased.content_rows = erase_step(&mut tx, erase_sql::CONTENT, e).await?;
    erased.review_items = erase_step(&mut tx, erase_sql::REVIEW, e).await?;
    for r in sqlx::query(erase_sql::FILES)
        .bind(&e.tenant.0)
        .bind(e.at)
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
        erased.export_marks = erase_step(&mut tx, erase_sql::EXPORT_MARKS, e).await?;
        if e.end_user_hash.is_none() {
            // Objects are the tenant's, not any one end user's.
            erased.upstream_object_rows = sqlx::query(erase_sql::OBJECTS)
                .bind(&e.tenant.0)
                .bind(e.at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        erased.metadata_rows = erase_step(&mut tx, erase_sql::META, e).await?;
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
