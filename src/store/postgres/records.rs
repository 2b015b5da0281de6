//! PostgreSQL: exchange records: insert (batched), read, count, page through content, and export.

use super::*;
use crate::store::{RecordStore, RetentionStore};

#[async_trait]
impl RecordStore for PgStore {
    async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        match self.insert_batch(records, false).await {
            Err(e) if is_duplicate(&e) => Ok(self.insert_batch(records, true).await?),
            Err(e) if is_missing_partition(&e) => {
                // A row beyond the prepared horizon (or a clock jump): make room, once.
                let now = OffsetDateTime::now_utc();
                let content_until = records
                    .iter()
                    .filter_map(|r| r.content.as_ref().map(|c| c.expires_at))
                    .max()
                    .unwrap_or(now);
                let metadata_until = records
                    .iter()
                    .map(|r| r.meta.expires_at)
                    .max()
                    .unwrap_or(now);
                let earliest = records
                    .iter()
                    .map(|r| r.meta.received_at)
                    .chain(
                        records
                            .iter()
                            .filter_map(|r| r.content.as_ref().map(|c| c.expires_at)),
                    )
                    .min()
                    .unwrap_or(now)
                    .min(now);
                self.prepare_partitions(earliest, content_until, metadata_until)
                    .await?;
                Ok(self.insert_batch(records, true).await?)
            }
            other => Ok(other?),
        }
    }

    async fn get_record(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        let sql = format!("SELECT {META_COLUMNS} FROM record_meta WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let meta = meta_from_row(&row)?;
        let sql = format!("SELECT {CONTENT_COLUMNS} FROM record_content WHERE record_id = $1");
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
            "SELECT {META_COLUMNS} FROM record_meta WHERE tenant_id = $1 ORDER BY received_at DESC, id DESC LIMIT $2"
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
             WHERE $1::uuid IS NULL OR record_id > $1 ORDER BY record_id LIMIT $2"
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
            .bind(q.since)
            .bind(q.until)
            .bind(q.now)
            .bind(after_at)
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
             WHERE received_at >= $1 AND received_at < $2 AND expires_at > $3 \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(since)
        .bind(until)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(tag_count).collect()
    }

    async fn finish_export(&self, export_id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO training_export_runs (export_id, finished_at) VALUES ($1, $2) \
             ON CONFLICT (export_id) DO NOTHING",
        )
        .bind(export_id)
        .bind(at)
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
        let ids: Vec<Uuid> = records.iter().map(|(id, _)| id.0).collect();
        let expires: Vec<OffsetDateTime> = records.iter().map(|(_, e)| *e).collect();
        sqlx::query(
            "INSERT INTO training_exports (record_id, export_id, exported_at, expires_at) \
             SELECT r, $2, $3, e FROM UNNEST($1::uuid[], $4::timestamptz[]) AS t(r, e) \
             ON CONFLICT (record_id) DO UPDATE SET export_id = EXCLUDED.export_id, \
             exported_at = EXCLUDED.exported_at",
        )
        .bind(&ids)
        .bind(export_id)
        .bind(at)
        .bind(&expires)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
