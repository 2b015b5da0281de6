//! Retention: partitions, the sweep, legal holds.

use super::*;

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Make sure records expiring up to `until` have somewhere to go
    /// (PostgreSQL partitions; nothing to do on SQLite).
    async fn prepare_partitions(
        &self,
        now: OffsetDateTime,
        content_until: OffsetDateTime,
        metadata_until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Remove every row past its `expires_at` that no active legal hold
    /// covers, in short batches. PostgreSQL drops whole partitions once their
    /// upper bound has passed. One sweeper at a time across replicas.
    async fn sweep(
        &self,
        now: OffsetDateTime,
        dry_run: bool,
        batch_size: usize,
    ) -> Result<SweepReport, StoreError>;

    /// Per swept table: rows past expiry and the oldest live row.
    async fn retention_stats(&self, now: OffsetDateTime) -> Result<Vec<TableStats>, StoreError>;

    /// The tables in the database (partitions excluded).
    async fn table_names(&self) -> Result<Vec<String>, StoreError>;

    /// Place a hold and audit it in one transaction. Returns its id.
    async fn add_hold(&self, hold: &NewHold, audit: &AuditEvent) -> Result<i64, StoreError>;

    /// Release an active hold and audit it; `false` when no such active hold.
    async fn release_hold(
        &self,
        id: i64,
        released_by: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    async fn list_holds(&self) -> Result<Vec<LegalHold>, StoreError>;

    /// The content-expiry days (since the Unix epoch) of content rows that
    /// expired before `before` and that an active legal hold keeps: their
    /// days' keys must stay while the hold does.
    async fn held_content_days(
        &self,
        now: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<i32>, StoreError>;

    /// Erase a tenant's stored data now, except what an active legal hold
    /// keeps, and append `audit` (with the counts) in the same transaction.
    async fn erase_tenant(
        &self,
        erasure: &Erasure,
        audit: &AuditEvent,
    ) -> Result<Erased, StoreError>;
}

/// A tenant's data to erase now (`custodian erase`).
#[derive(Debug, Clone)]
pub struct Erasure {
    pub tenant: TenantId,
    /// Metadata too (kept by default: billing and audit need it).
    pub include_metadata: bool,
    pub at: OffsetDateTime,
    /// Only the records of this end user (its keyed hash).
    pub end_user_hash: Option<String>,
}

/// What an erasure removed, and what legal holds kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub content_rows: u64,
    pub review_items: u64,
    pub metadata_rows: u64,
    pub export_marks: u64,
    pub upstream_object_rows: u64,
    /// Fine-tune file copies whose rows went: their blobs and keys are the
    /// caller's to remove.
    #[serde(skip)]
    pub files: Vec<ErasedFile>,
    pub file_copies: u64,
    /// Copies whose rows went but whose blob or key could not be removed
    /// (the blob store failed): their object keys, for the operator.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files_not_removed: Vec<String>,
    pub kept: Vec<KeptByHold>,
    /// With encryption on: `destroyed` (every copy of the tenant's content,
    /// backups included, is unreadable) or why the key was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedFile {
    pub object_key: String,
    pub record_id: RecordId,
}

/// An active legal hold that kept some of the tenant's content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptByHold {
    pub hold_id: i64,
    pub reason: String,
    /// The one record the hold covers; `None`: the whole tenant.
    pub record: Option<String>,
    pub content_rows_kept: i64,
}

/// The statements of an erasure, in order, with `$1` the tenant, `$2` the
/// instant holds are judged at and `$3` the end user's hash (`''`: every
/// record of the tenant); `t.{id}` is each table's record id.
pub(super) mod erase_sql {
    macro_rules! not_held {
        ($id:literal) => {
            concat!(
                "NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.tenant_id = t.tenant_id \
                 AND (h.record_id IS NULL OR h.record_id = t.",
                $id,
                ") AND h.released_at IS NULL AND h.ends_at > $2)"
            )
        };
    }
    pub const KEPT: &str =
        "SELECT h.id, h.reason, h.record_id, (SELECT count(*) FROM record_content c \
        WHERE c.tenant_id = h.tenant_id AND (h.record_id IS NULL OR h.record_id = c.record_id)) \
        FROM legal_holds h WHERE h.tenant_id = $1 AND h.released_at IS NULL AND h.ends_at > $2 \
        ORDER BY h.id";
    macro_rules! of_end_user {
        ($id:literal) => {
            concat!(
                "($3 = '' OR t.",
                $id,
                " IN (SELECT m.id FROM record_meta m WHERE m.tenant_id = $1 \
                 AND m.end_user_hash = $3))"
            )
        };
    }
    pub const CONTENT: &str = concat!(
        "DELETE FROM record_content AS t WHERE t.tenant_id = $1 AND ",
        of_end_user!("record_id"),
        " AND ",
        not_held!("record_id")
    );
    pub const REVIEW: &str = concat!(
        "DELETE FROM review_items AS t WHERE t.tenant_id = $1 AND ",
        of_end_user!("record_id"),
        " AND ",
        not_held!("record_id")
    );
    pub const FILES: &str = concat!(
        "DELETE FROM file_copies AS t WHERE t.tenant_id = $1 AND ",
        of_end_user!("record_id"),
        " AND ",
        not_held!("record_id"),
        " RETURNING object_key, record_id"
    );
    pub const EXPORT_MARKS: &str = concat!(
        "DELETE FROM training_exports WHERE record_id IN (SELECT t.id FROM record_meta t \
         WHERE t.tenant_id = $1 AND ($3 = '' OR t.end_user_hash = $3) AND ",
        not_held!("id"),
        ")"
    );
    /// Only objects already deleted: a live object's owner row is what lets
    /// its tenant reach it.
    pub const OBJECTS: &str = "DELETE FROM upstream_objects WHERE tenant_id = $1 \
        AND deleted_at IS NOT NULL AND deleted_at <= $2";
    pub const META: &str = concat!(
        "DELETE FROM record_meta AS t WHERE t.tenant_id = $1 \
         AND ($3 = '' OR t.end_user_hash = $3) AND ",
        not_held!("id")
    );
}
