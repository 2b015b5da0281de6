//! The hash-chained audit log.

use super::*;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append one entry to the audit chain. Returns its sequence number.
    async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError>;

    /// Audit entries with a sequence number above `after`, in order.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    /// Audit entries matching `filter`.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// The audit chain's head as the store last wrote it: `(seq, hash)`.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;
}
