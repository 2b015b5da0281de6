//! Tenants' training-use consent: an append-only event log.

use super::*;

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Append a consent event and its audit entry in one transaction; the
    /// entry's subject becomes `consent_event:<number>`. Returns the number.
    async fn record_consent(
        &self,
        event: &ConsentEvent,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError>;

    /// Consent events with a sequence number above `after`, in order.
    async fn consent_events_after(&self, after: i64)
        -> Result<Vec<StoredConsentEvent>, StoreError>;

    /// One tenant's consent history, in the order it was recorded.
    async fn consent_history(&self, tenant: &TenantId) -> Result<Vec<ConsentEvent>, StoreError>;
}
