//! SQLite: the review queue and the suspensions its decisions trigger.

use super::*;
use crate::store::{RecordStore, ReviewStore};

#[async_trait]
impl ReviewStore for SqliteStore {
    async fn review_item(&self, record: RecordId) -> Result<Option<ReviewItem>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM review_items WHERE record_id = ?1"
        ))
        .bind(record.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn list_review_items(&self, f: &ReviewFilter) -> Result<Vec<ReviewItem>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "SELECT {ITEM_COLUMNS} FROM review_items t WHERE TRUE"
        ));
        if let Some(v) = &f.status {
            q.push(" AND status = ").push_bind(v.clone());
        }
        if let Some(v) = &f.tenant {
            q.push(" AND tenant_id = ").push_bind(v.clone());
        }
        if let Some(v) = f.severity {
            q.push(" AND severity = ").push_bind(v.as_str());
        }
        if let Some(v) = &f.assignee {
            q.push(" AND assignee = ").push_bind(v.clone());
        }
        if let Some(rule) = &f.rule {
            let needle = format!("%\"rule\":{}%", serde_json::Value::from(rule.as_str()));
            q.push(" AND reasons LIKE ").push_bind(needle);
        }
        if let Some(v) = f.since {
            q.push(" AND created_at >= ").push_bind(to_micros(v));
        }
        if let Some(v) = f.until {
            q.push(" AND created_at < ").push_bind(to_micros(v));
        }
        if let Some(now) = f.live_at {
            q.push(" AND (t.expires_at > ")
                .push_bind(to_micros(now))
                .push(" OR EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.ends_at > ")
                .push_bind(to_micros(now))
                .push(" AND h.tenant_id = t.tenant_id AND (h.record_id IS NULL OR h.record_id = t.record_id)))");
        }
        // Row comparisons carry the cursor: the position after the last item shown.
        let rank = match f.order {
            ReviewOrder::Created => "",
            ReviewOrder::Severity => SEVERITY_RANK,
        };
        if let Some((severity, at, id)) = f.after {
            match (f.order, severity) {
                (ReviewOrder::Severity, Some(severity)) => q
                    .push(format!(" AND ({rank}, created_at, record_id) > ("))
                    .push_bind(severity_rank(severity))
                    .push(", "),
                _ => q.push(" AND (created_at, record_id) > ("),
            };
            q.push_bind(to_micros(at))
                .push(", ")
                .push_bind(id.0)
                .push(")");
        }
        let order_by = match f.order {
            ReviewOrder::Created => " ORDER BY created_at, record_id LIMIT ".to_owned(),
            ReviewOrder::Severity => format!(" ORDER BY {rank}, created_at, record_id LIMIT "),
        };
        q.push(order_by).push_bind(f.limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn read_review_item(
        &self,
        record: RecordId,
        audit: &AuditEvent,
    ) -> Result<Option<(ReviewItem, Record)>, StoreError> {
        // The audit entry commits before any content is read: no entry, no data.
        let mut tx = self.pool.begin().await?;
        let item = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM review_items WHERE record_id = ?1"
        ))
        .bind(record.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(item) = item.as_ref().map(item_from_row).transpose()? else {
            return Ok(None);
        };
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{record}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        let Some(stored) = self.get_record(record).await? else {
            return Ok(None);
        };
        Ok(Some((item, stored)))
    }

    async fn claim_next_item(
        &self,
        assignee: &str,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<ReviewItem>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE review_items SET status = 'claimed', assignee = ?1, updated_at = ?2 \
             WHERE record_id = (SELECT record_id FROM review_items t \
             WHERE status = 'open' AND (t.expires_at > ?2 OR EXISTS (SELECT 1 FROM legal_holds h \
             WHERE h.released_at IS NULL AND h.ends_at > ?2 AND h.tenant_id = t.tenant_id \
             AND (h.record_id IS NULL OR h.record_id = t.record_id))) \
             ORDER BY {SEVERITY_RANK}, created_at, record_id LIMIT 1) \
             RETURNING {ITEM_COLUMNS}"
        ))
        .bind(assignee)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(item) = row.as_ref().map(item_from_row).transpose()? else {
            return Ok(None);
        };
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{}", item.record_id));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(Some(item))
    }

    async fn update_review_item(
        &self,
        record: RecordId,
        change: &ItemChange,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writing first takes the row (PostgreSQL) or the database (SQLite)
        // before the notes are read back.
        let touched = sqlx::query(
            "UPDATE review_items SET updated_at = ?2 \
             WHERE record_id = ?1 AND status <> 'resolved'",
        )
        .bind(record.0)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if touched != 1 {
            return Ok(false);
        }
        match change {
            ItemChange::Assign(name) => {
                sqlx::query(
                    "UPDATE review_items SET assignee = ?2, \
                     status = CASE WHEN status = 'open' THEN 'claimed' ELSE status END \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            ItemChange::Note { author, text } => {
                let notes: String =
                    sqlx::query_scalar("SELECT notes FROM review_items WHERE record_id = ?1")
                        .bind(record.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let notes = crate::store::append_note(&notes, author, text, now);
                sqlx::query("UPDATE review_items SET notes = ?2 WHERE record_id = ?1")
                    .bind(record.0)
                    .bind(notes)
                    .execute(&mut *tx)
                    .await?;
            }
            ItemChange::Resolve {
                resolution,
                suspension,
                ..
            } => {
                sqlx::query(
                    "UPDATE review_items SET status = 'resolved', resolution = ?2 \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(resolution)
                .execute(&mut *tx)
                .await?;
                if let Some(s) = suspension {
                    insert_suspension_in(&mut tx, s, now).await?;
                }
            }
        }
        let mut audit = audit.clone();
        audit.subject = Some(format!("review_item:{record}"));
        append_audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn review_counts(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, severity, count(*) FROM review_items WHERE expires_at > ?1 \
             GROUP BY status, severity ORDER BY status, severity",
        )
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn add_suspension(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
        reason: &str,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let suspension = NewSuspension {
            tenant: tenant.clone(),
            key_id: key.map(str::to_owned),
            reason: reason.to_owned(),
            created_by: by.to_owned(),
            audit: audit.clone(),
        };
        let id = insert_suspension_in(&mut tx, &suspension, at).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn lift_suspension(
        &self,
        id: i64,
        by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let lifted = sqlx::query(
            "UPDATE suspensions SET lifted_at = ?2, lifted_by = ?3 \
             WHERE id = ?1 AND lifted_at IS NULL",
        )
        .bind(id)
        .bind(to_micros(at))
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if lifted {
            let mut audit = audit.clone();
            audit.subject = Some(format!("suspension:{id}"));
            append_audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }

    async fn list_suspensions(&self) -> Result<Vec<Suspension>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, key_id, reason, created_by, created_at, lifted_at, lifted_by \
             FROM suspensions ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Suspension {
                    id: r.try_get("id")?,
                    tenant: TenantId(r.try_get("tenant_id")?),
                    key_id: r.try_get("key_id")?,
                    reason: r.try_get("reason")?,
                    created_by: r.try_get("created_by")?,
                    created_at: from_micros(r.try_get("created_at")?)?,
                    lifted_at: r
                        .try_get::<Option<i64>, _>("lifted_at")?
                        .map(from_micros)
                        .transpose()?,
                    lifted_by: r.try_get("lifted_by")?,
                })
            })
            .collect()
    }

    async fn add_review_flag(
        &self,
        record: RecordId,
        tenant: &TenantId,
        flag: &ReviewFlag,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Writing first takes the row (or the database) before reading it.
        let existing = sqlx::query(
            "UPDATE review_items SET updated_at = ?2 WHERE record_id = ?1 \
             RETURNING severity, action, reasons",
        )
        .bind(record.0)
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        match existing {
            Some(r) => {
                let (severity, action, verdicts) = crate::store::review_fields(
                    &r.try_get::<String, _>("severity")?,
                    &r.try_get::<String, _>("action")?,
                    &r.try_get::<String, _>("reasons")?,
                )?;
                let merged = flag.merged_with(severity, action, verdicts);
                sqlx::query(
                    "UPDATE review_items SET severity = ?2, action = ?3, reasons = ?4 \
                     WHERE record_id = ?1",
                )
                .bind(record.0)
                .bind(merged.severity.as_str())
                .bind(merged.action.as_str())
                .bind(merged.reasons_json())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO review_items (record_id, tenant_id, severity, action, reasons, \
                     content_kept, created_at, updated_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                )
                .bind(record.0)
                .bind(&tenant.0)
                .bind(flag.severity.as_str())
                .bind(flag.action.as_str())
                .bind(flag.reasons_json())
                .bind(flag.content_kept)
                .bind(to_micros(now))
                .bind(to_micros(flag.expires_at))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
