//! Tenants' upstream objects and the kept copies of fine-tune files.

use super::*;

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Register objects created upstream; one already registered (on the
    /// same route) keeps its first owner.
    async fn insert_objects(&self, objects: &[UpstreamObject]) -> Result<(), StoreError>;

    /// The registry rows of `ids` on `route` (deleted ones included).
    async fn objects(&self, route: &str, ids: &[String])
        -> Result<Vec<UpstreamObject>, StoreError>;

    /// Live objects whose `purge_at` has passed, oldest first.
    async fn objects_to_purge(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<UpstreamObject>, StoreError>;

    /// The owner deleted an object: the row expires `keep_for` later
    /// (metadata retention). `false` when it is not registered.
    async fn mark_object_deleted(
        &self,
        route: &str,
        object_id: &str,
        at: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError>;

    /// Index a kept file copy (replacing one with the same id).
    async fn insert_file_copy(&self, copy: &FileCopy) -> Result<(), StoreError>;

    async fn file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
    ) -> Result<Option<FileCopy>, StoreError>;

    /// The upload records of every kept copy (whose file keys are in use).
    async fn file_copy_records(&self) -> Result<Vec<RecordId>, StoreError>;

    /// Forget a copy and audit it in one transaction; `false` when none.
    async fn delete_file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}
