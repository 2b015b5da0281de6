//! SQLite: exchange records: insert (batched), read, count, page through content, and export.

use super::*;
use crate::store::RecordStore;

#[async_trait]
impl RecordStore for SqliteStore {
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
                .push_bind(to_micros(m.expires_at))
                .push_bind(&m.end_user_hash);
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
                    .push_bind(c.sealed)
                    .push_bind(c.compressed);
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
