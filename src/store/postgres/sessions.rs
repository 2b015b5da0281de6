//! PostgreSQL: web console sessions and OpenID Connect sign-ins under way.

use super::*;
use crate::domain::access::ConsoleSession;
use crate::store::{PendingSignIn, SessionStore};

/// A session's columns, named apart from its principal's (which the join
/// selects under their own names, for `principal_from_row`).
const SESSION_COLUMNS: &str = "s.id_hash, s.principal_id, s.via, s.created_at AS s_created_at, \
     s.last_seen_at, s.expires_at AS s_expires_at, s.ended_at";

#[async_trait]
impl SessionStore for PgStore {
    async fn open_session(
        &self,
        session: &ConsoleSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO console_sessions \
             (id_hash, principal_id, via, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id_hash)
        .bind(session.principal_id)
        .bind(&session.via)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &str,
    ) -> Result<Option<(ConsoleSession, Principal)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS}, p.id, p.name, p.role, p.created_at, p.expires_at, \
             p.revoked_at FROM console_sessions s \
             JOIN principals p ON p.id = s.principal_id WHERE s.id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let session = ConsoleSession {
            id_hash: r.try_get("id_hash")?,
            principal_id: r.try_get("principal_id")?,
            via: r.try_get("via")?,
            created_at: r.try_get("s_created_at")?,
            last_seen_at: r.try_get("last_seen_at")?,
            expires_at: r.try_get("s_expires_at")?,
            ended_at: r.try_get("ended_at")?,
        };
        let principal = principal_from_row(&r)?;
        Ok(Some((session, principal)))
    }

    async fn touch_session(&self, id_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen_at = $2 \
             WHERE id_hash = $1 AND ended_at IS NULL AND last_seen_at < $2",
        )
        .bind(id_hash)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn end_session(
        &self,
        id_hash: &str,
        at: OffsetDateTime,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query(
            "UPDATE console_sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL",
        )
        .bind(id_hash)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if let (true, Some(audit)) = (ended, audit) {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(ended)
    }

    async fn begin_sign_in(&self, s: &PendingSignIn) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sign_ins \
             (id_hash, state, nonce, pkce_verifier, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(&s.state)
        .bind(&s.nonce)
        .bind(&s.pkce_verifier)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_sign_in(
        &self,
        id_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM console_sign_ins WHERE id_hash = $1 \
             RETURNING id_hash, state, nonce, pkce_verifier, created_at, expires_at",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sign_in = PendingSignIn {
            id_hash: r.try_get("id_hash")?,
            state: r.try_get("state")?,
            nonce: r.try_get("nonce")?,
            pkce_verifier: r.try_get("pkce_verifier")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        };
        Ok((sign_in.expires_at > now).then_some(sign_in))
    }
}
