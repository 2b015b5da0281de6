//! Exchange records: insert (batched), read, count, page through content, and export.

use super::*;

#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Insert a batch in one transaction. Idempotent: a record id already
    /// stored is skipped, so a replayed batch never duplicates.
    async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError>;

    async fn get_record(&self, id: RecordId) -> Result<Option<Record>, StoreError>;

    /// A tenant's records, newest first.
    async fn list_records(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<RecordMeta>, StoreError>;

    async fn count_records(&self) -> Result<i64, StoreError>;

    /// Up to `limit` content rows in record-id order after `after`: every
    /// stored body, for checking it against the key store.
    async fn content_page(
        &self,
        after: Option<RecordId>,
        limit: i64,
    ) -> Result<Vec<StoredContent>, StoreError>;

    /// Records tagged usable for training, streamed in `(received_at, id)`
    /// order (constant memory however many there are). Never a ZDR record.
    fn export_candidates(
        &self,
        query: ExportQuery,
    ) -> BoxStream<'_, Result<ExportCandidate, StoreError>>;

    /// Live records received in `[since, until)`, counted by training tag.
    async fn training_tag_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<TagCount>, StoreError>;

    /// Record that an export finished: from now on its marks hide records
    /// from later exports.
    async fn finish_export(&self, export_id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Mark records as taken by `export_id` (replacing an earlier mark).
    async fn mark_exported(
        &self,
        export_id: Uuid,
        at: OffsetDateTime,
        records: &[(RecordId, OffsetDateTime)],
    ) -> Result<(), StoreError>;
}
