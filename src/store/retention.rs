//! Retention: partitions, the sweep, legal holds.

use super::*;

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Make sure records expiring up to `until` have somewhere to go
    /// (PostgreSQL partitions; nothing to do on SQLite).
    async fn prepare_partitions(
        &self,
        now: OffsetDateTime,
        content_until: OffsetDateTime,
        metadata_until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Remove every row past its `expires_at` that no active legal hold
    /// covers, in short batches. PostgreSQL drops whole partitions once their
    /// upper bound has passed. One sweeper at a time across replicas.
    async fn sweep(
        &self,
        now: OffsetDateTime,
        dry_run: bool,
        batch_size: usize,
    ) -> Result<SweepReport, StoreError>;

    /// Per swept table: rows past expiry and the oldest live row.
    async fn retention_stats(&self, now: OffsetDateTime) -> Result<Vec<TableStats>, StoreError>;

    /// The tables in the database (partitions excluded).
    async fn table_names(&self) -> Result<Vec<String>, StoreError>;

    /// Place a hold and audit it in one transaction. Returns its id.
    async fn add_hold(&self, hold: &NewHold, audit: &AuditEvent) -> Result<i64, StoreError>;

    /// Release an active hold and audit it; `false` when no such active hold.
    async fn release_hold(
        &self,
        id: i64,
        released_by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    async fn list_holds(&self) -> Result<Vec<LegalHold>, StoreError>;

    /// The content-expiry days (since the Unix epoch) of content rows that
    /// expired before `before` and that an active legal hold keeps: their
    /// days' keys must stay while the hold does.
    async fn held_content_days(
        &self,
        now: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<i32>, StoreError>;
}
