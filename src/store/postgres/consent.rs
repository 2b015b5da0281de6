//! PostgreSQL: tenants' training-use consent: an append-only event log.

use super::*;
use crate::store::ConsentStore;

#[async_trait]
impl ConsentStore for PgStore {
    async fn record_consent(
        &self,
        e: &ConsentEvent,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO consent_events (tenant_id, opted_in, effective_at, recorded_at, actor, source, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&e.tenant.0)
        .bind(e.opted_in)
        .bind(e.effective_at)
        .bind(e.recorded_at)
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
        let rows = sqlx::query(
            "SELECT id, tenant_id, opted_in, effective_at, recorded_at, actor, source, note \
             FROM consent_events WHERE id > $1 ORDER BY id",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
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
        let rows = sqlx::query(
            "SELECT id, tenant_id, opted_in, effective_at, recorded_at, actor, source, note \
             FROM consent_events WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(&tenant.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(consent_from_row).collect()
    }
}
