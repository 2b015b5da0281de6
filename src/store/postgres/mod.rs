//! PostgreSQL store: production, several replicas on one database.

mod access;
mod audit;
mod consent;
mod insert;
mod objects;
mod partitions;
mod proof;
mod records;
mod retention;
mod review;
mod rows;
mod sessions;
mod sweep;

use insert::*;
use partitions::*;
use rows::*;
use sweep::*;

use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use time::{Date, Month, OffsetDateTime};

use futures_util::stream::{BoxStream, StreamExt};
use uuid::Uuid;

use super::{
    severity_rank, tag_count, AuditFilter, ExportCandidate, ExportQuery, FileCopy, ItemChange,
    LegalHold, NewHold, NewPrincipal, NewSuspension, Record, RecordContent, RecordMeta,
    ReviewFilter, ReviewFlag, ReviewItem, ReviewOrder, Store, StoreError, StoredConsentEvent,
    StoredContent, Suspension, SweepReport, TableStats, TagCount, UpstreamObject, Usage,
    SEVERITY_RANK,
};
use crate::config::DatabaseConfig;
use crate::domain::access::{Principal, Role};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};

const INSERT_META: &str = "INSERT INTO record_meta (id, request_id, tenant_id, key_id, route, method, path, \
    status, model, prompt_tokens, completion_tokens, total_tokens, streamed, outcome, total_us, \
    upstream_ttfb_us, upstream_total_us, request_bytes, response_bytes, training_usable, training_basis, \
    profile, policy_version, zero_data_retention, received_at, content_expires_at, expires_at, end_user_hash) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
    $8::int[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bool[], $14::text[], $15::bigint[], \
    $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[], $20::bool[], $21::text[], $22::text[], \
    $23::text[], $24::bool[], $25::timestamptz[], $26::timestamptz[], $27::timestamptz[], $28::text[])";

const INSERT_CONTENT: &str = "INSERT INTO record_content (record_id, tenant_id, request_body, \
    request_truncated, response_body, response_truncated, received_at, expires_at, sealed, compressed) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[], $4::bool[], $5::bytea[], $6::bool[], \
    $7::timestamptz[], $8::timestamptz[], $9::bool[], $10::bool[])";

const INSERT_REVIEW: &str = "INSERT INTO review_items (record_id, tenant_id, severity, action, \
    reasons, content_kept, created_at, updated_at, expires_at) \
    SELECT r, t, s, a, j, k, c, c, e FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
    $5::text[], $6::bool[], $7::timestamptz[], $8::timestamptz[]) AS x(r, t, s, a, j, k, c, e)";

/// Appended when a batch may repeat stored records (a retry after an
/// unknown commit outcome, a replay). Speculative insertion costs about a
/// third more per row, so the first attempt goes without it.
const SKIP_STORED: &str = " ON CONFLICT DO NOTHING";

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&config.url)?.application_name("custodian");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// One statement per table whatever the batch size: columns travel as
    /// arrays and `UNNEST` turns them into rows, so PostgreSQL parses and
    /// plans each statement once per connection, not once per batch size.
    async fn insert_batch(&self, records: &[Record], skip_stored: bool) -> Result<(), sqlx::Error> {
        let suffix = if skip_stored { SKIP_STORED } else { "" };
        let (insert_meta, insert_content) = (
            format!("{INSERT_META}{suffix}"),
            format!("{INSERT_CONTENT}{suffix}"),
        );
        let mut tx = self.pool.begin().await?;
        // One transaction, one statement per table: metadata, content (not
        // for ZDR records), review items (flagged records).
        let metas: Vec<&RecordMeta> = records.iter().map(|r| &r.meta).collect();
        insert_metas(&mut tx, &insert_meta, &metas).await?;
        let with_content: Vec<(&RecordMeta, &RecordContent)> = records
            .iter()
            .filter_map(|r| r.content.as_ref().map(|c| (&r.meta, c)))
            .collect();
        if !with_content.is_empty() {
            insert_contents(&mut tx, &insert_content, &with_content).await?;
        }
        let flagged: Vec<(&RecordMeta, &ReviewFlag)> = records
            .iter()
            .filter_map(|r| r.review.as_ref().map(|f| (&r.meta, f)))
            .collect();
        if !flagged.is_empty() {
            insert_reviews(&mut tx, &format!("{INSERT_REVIEW}{suffix}"), &flagged).await?;
        }
        tx.commit().await
    }
}

fn has_code(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// True when an insert failed because no partition covers a row.
fn is_missing_partition(e: &sqlx::Error) -> bool {
    has_code(e, "23514")
}

/// True when a record of the batch is already stored.
fn is_duplicate(e: &sqlx::Error) -> bool {
    has_code(e, "23505")
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn cluster_id(&self) -> Option<String> {
        cluster_id(&self.pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Append `event` to the audit chain inside `tx`. Bumping the head row
/// first locks it, so appenders on every replica queue up behind it.
async fn append_audit_in(
    tx: &mut sqlx::PgConnection,
    event: &AuditEvent,
) -> Result<i64, sqlx::Error> {
    let (seq, prev_hash): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
    let entry = AuditEntry::chain(event, seq - 1, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, tenant_id, subject, source, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(entry.seq)
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.tenant.as_ref().map(|t| t.0.as_str()))
    .bind(&entry.subject)
    .bind(&entry.source)
    .bind(&entry.details)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await?;
    Ok(entry.seq)
}

/// Add a suspension and its audit entry inside `tx`. Returns its id.
async fn insert_suspension_in(
    tx: &mut sqlx::PgConnection,
    s: &NewSuspension,
    at: OffsetDateTime,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO suspensions (tenant_id, key_id, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&s.tenant.0)
    .bind(s.key_id.as_deref())
    .bind(&s.reason)
    .bind(&s.created_by)
    .bind(at)
    .fetch_one(&mut *tx)
    .await?;
    let mut audit = s.audit.clone();
    audit.subject = Some(format!("suspension:{id}"));
    append_audit_in(tx, &audit).await?;
    Ok(id)
}

/// `system_identifier` of the cluster behind `pool`, if the role may read it.
pub async fn cluster_id(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
        .fetch_one(pool)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    #[test]
    fn partition_names_read_back_as_their_bounds() {
        for p in partitions_wanted(
            datetime!(2026-12-30 10:00 UTC),
            datetime!(2027-01-02 00:00 UTC),
            datetime!(2027-03-01 00:00 UTC),
        ) {
            assert_eq!(parse_partition(&p.name), Some(p.clone()));
        }
        for bad in [
            "record_content_p2026133",
            "record_meta_p202613",
            "other_p20260101",
            "record_content_p20260230",
        ] {
            assert_eq!(parse_partition(bad), None, "{bad}");
        }
    }

    #[test]
    fn partitions_cover_today_through_the_horizons() {
        let now = datetime!(2026-12-30 10:00 UTC);
        let parts = partitions_wanted(now, now + Duration::days(3), now + Duration::days(40));
        let content: Vec<_> = parts
            .iter()
            .filter(|p| p.parent == "record_content")
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            content,
            [
                "record_content_p20261230",
                "record_content_p20261231",
                "record_content_p20270101",
                "record_content_p20270102"
            ]
        );
        let meta: Vec<_> = parts
            .iter()
            .filter(|p| p.parent == "record_meta")
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            meta,
            [
                "record_meta_p202612",
                "record_meta_p202701",
                "record_meta_p202702"
            ]
        );
        let dec = parts
            .iter()
            .find(|p| p.name == "record_meta_p202612")
            .unwrap();
        assert!(dec
            .create_sql()
            .contains("FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"));
    }
}
