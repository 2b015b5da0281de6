//! The review queue and the suspensions its decisions trigger.

use super::*;

#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// The review item of a record, if it was flagged (no audit: metadata).
    async fn review_item(&self, record: RecordId) -> Result<Option<ReviewItem>, StoreError>;

    /// Add verdicts found after the fact (the classifier) to a record's
    /// item, opening one if it has none.
    async fn add_review_flag(
        &self,
        record: RecordId,
        tenant: &TenantId,
        flag: &ReviewFlag,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Review items matching `filter` (metadata only, no payloads).
    async fn list_review_items(&self, filter: &ReviewFilter)
        -> Result<Vec<ReviewItem>, StoreError>;

    /// Read an item with its record and content, writing `audit` in the same
    /// transaction: no audit entry, no data. `None` when there is no item.
    async fn read_review_item(
        &self,
        record: RecordId,
        audit: &AuditEvent,
    ) -> Result<Option<(ReviewItem, Record)>, StoreError>;

    /// Claim the most severe, oldest open item for `assignee`; two callers
    /// never get the same item. Audited in the same transaction.
    async fn claim_next_item(
        &self,
        assignee: &str,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<ReviewItem>, StoreError>;

    /// Apply `change` and audit it in one transaction; `false` when there is
    /// no such item (or it is already resolved).
    async fn update_review_item(
        &self,
        record: RecordId,
        change: &ItemChange,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Live items counted by status and severity.
    async fn review_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Suspend a key (or, with `key` `None`, a tenant) and audit it.
    async fn add_suspension(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
        reason: &str,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError>;

    /// Lift a suspension and audit it; `false` when none is in force.
    async fn lift_suspension(
        &self,
        id: i64,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    async fn list_suspensions(&self) -> Result<Vec<Suspension>, StoreError>;
}
