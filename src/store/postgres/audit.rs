//! PostgreSQL: the hash-chained audit log.

use super::*;
use crate::store::AuditStore;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq = append_audit_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
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
            q.push(" AND at >= ").push_bind(v);
        }
        if let Some(v) = f.until {
            q.push(" AND at < ").push_bind(v);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
