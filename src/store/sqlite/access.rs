//! SQLite: principals: who may use the review and admin API.

use super::*;
use crate::store::AccessStore;

#[async_trait]
impl AccessStore for SqliteStore {
    async fn add_principal(&self, p: &NewPrincipal, audit: &AuditEvent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO principals (name, role, token_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(&p.name)
        .bind(p.role.as_str())
        .bind(&p.token_hash)
        .bind(to_micros(p.created_at))
        .bind(p.expires_at.map(to_micros))
        .fetch_one(&mut *tx)
        .await?;
        let mut audit = audit.clone();
        audit.subject = Some(format!("principal:{}", p.name));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn principal_by_token(&self, token_hash: &str) -> Result<Option<Principal>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE token_hash = ?1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(principal_from_row).transpose()
    }

    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(principal_from_row).collect()
    }

    async fn revoke_principal(
        &self,
        name: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE principals SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(to_micros(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            // Its console sessions end with it, at once.
            sqlx::query(
                "UPDATE console_sessions SET ended_at = ?2 WHERE ended_at IS NULL \
                 AND principal_id = (SELECT id FROM principals WHERE name = ?1)",
            )
            .bind(name)
            .bind(to_micros(at))
            .execute(&mut *tx)
            .await?;
            let mut audit = audit.clone();
            audit.subject = Some(format!("principal:{name}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }
}
