//! Principals: who may use the review and admin API.

use super::*;

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Create a principal and audit it. Returns its id.
    async fn add_principal(&self, p: &NewPrincipal, audit: &AuditEvent) -> Result<i64, StoreError>;

    /// The principal whose token has this hash (active or not).
    async fn principal_by_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError>;

    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError>;

    /// Revoke a principal by name and audit it; `false` when none is active.
    async fn revoke_principal(
        &self,
        name: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}
