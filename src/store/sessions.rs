//! Web console sessions and OpenID Connect sign-ins under way.

use super::*;

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Open a session and audit the sign-in in one transaction.
    async fn open_session(
        &self,
        session: &ConsoleSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The session with this hash and its principal (ended or not: the
    /// caller judges it, with the principal's own expiry and revocation).
    async fn session(
        &self,
        id_hash: &str,
    ) -> Result<Option<(ConsoleSession, Principal)>, StoreError>;

    /// Note activity on a live session.
    async fn touch_session(&self, id_hash: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    /// End a session, with its audit entry in the same transaction when
    /// given; `false` when it had already ended (nothing is audited then).
    async fn end_session(
        &self,
        id_hash: &str,
        at: OffsetDateTime,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, StoreError>;

    /// Keep a sign-in under way until its callback takes it.
    async fn begin_sign_in(&self, sign_in: &PendingSignIn) -> Result<(), StoreError>;

    /// Remove and return a sign-in under way; `None` when it is unknown,
    /// already taken or past its expiry (expired ones are removed too).
    async fn take_sign_in(
        &self,
        id_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PendingSignIn>, StoreError>;
}

/// An OpenID Connect sign-in under way: what its callback must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    /// Hash of the cookie that binds it to the browser that started it.
    pub id_hash: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}
