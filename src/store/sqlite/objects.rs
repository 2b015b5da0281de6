//! SQLite: tenants' upstream objects and the kept copies of fine-tune files.

use super::*;
use crate::store::ObjectStore;

#[async_trait]
impl ObjectStore for SqliteStore {
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
}
