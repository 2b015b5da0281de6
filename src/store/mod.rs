//! Persistence. One [`Store`] trait, a PostgreSQL and a SQLite
//! implementation that pass one conformance suite (`tests/api/store.rs`).
//! This module is the only one that knows sqlx; callers get [`StoreError`].

mod postgres;
pub mod registry;
mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::abuse::{RuleAction, Severity, Verdict};
use crate::audit::{AuditEntry, AuditEvent};
use crate::config::DatabaseConfig;
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};
use crate::review::access::{Principal, Role};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite://…")]
    UnsupportedUrl(String),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("the store did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// True when retrying the same write cannot succeed (bad data, a
    /// constraint, a statement the database refuses), as opposed to a
    /// connection or resource problem that may pass.
    pub fn is_permanent(&self) -> bool {
        let Self::Database(sqlx::Error::Database(db)) = self else {
            return matches!(self, Self::Corrupt(_));
        };
        let code = db.code().unwrap_or_default();
        if code.len() == 5 {
            // PostgreSQL SQLSTATE: connection (08), transaction rollback (40),
            // resources (53), operator intervention (57) may pass.
            !matches!(&code[..2], "08" | "40" | "53" | "57")
        } else {
            // SQLite result codes: busy, locked, I/O, full, cannot open may pass.
            let primary = code.parse::<i32>().unwrap_or(0) & 0xff;
            !matches!(primary, 5 | 6 | 10 | 13 | 14)
        }
    }
}

/// Token usage as the upstream reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
}

/// The part of a record kept for billing and audit (metadata retention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    pub id: RecordId,
    pub request_id: String,
    pub tenant: TenantId,
    pub key_id: KeyId,
    pub route: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub model: Option<String>,
    pub usage: Usage,
    pub streamed: bool,
    pub outcome: Outcome,
    pub total_us: i64,
    pub upstream_ttfb_us: Option<i64>,
    pub upstream_total_us: Option<i64>,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub training: TrainingTag,
    pub profile: String,
    pub policy_version: String,
    pub zero_data_retention: bool,
    pub received_at: OffsetDateTime,
    /// `None` when no content was stored (zero data retention).
    pub content_expires_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
}

/// The captured bodies (content retention). Never written for ZDR tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SpooledContent")]
pub struct RecordContent {
    #[serde(with = "serde_bytes")]
    pub request_body: Vec<u8>,
    pub request_truncated: bool,
    #[serde(with = "serde_bytes")]
    pub response_body: Vec<u8>,
    pub response_truncated: bool,
    pub expires_at: OffsetDateTime,
    /// Both bodies are sealed (encrypted). Said apart from the bytes, so
    /// that a body in clear is never taken for a sealed one, whatever it
    /// begins with.
    pub sealed: bool,
}

/// A content as the spool holds it; frames written before `sealed` existed
/// lack it, and only then is it read from the bytes.
#[derive(Deserialize)]
struct SpooledContent {
    #[serde(with = "serde_bytes")]
    request_body: Vec<u8>,
    request_truncated: bool,
    #[serde(with = "serde_bytes")]
    response_body: Vec<u8>,
    response_truncated: bool,
    expires_at: OffsetDateTime,
    sealed: Option<bool>,
}

impl From<SpooledContent> for RecordContent {
    fn from(c: SpooledContent) -> Self {
        let sealed = c
            .sealed
            .unwrap_or_else(|| crate::crypto::sealed_before_the_flag(&c.request_body));
        Self {
            request_body: c.request_body,
            request_truncated: c.request_truncated,
            response_body: c.response_body,
            response_truncated: c.response_truncated,
            expires_at: c.expires_at,
            sealed,
        }
    }
}

/// A content row with the record and tenant it belongs to.
#[derive(Debug, Clone)]
pub struct StoredContent {
    pub record: RecordId,
    pub tenant: TenantId,
    pub content: RecordContent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub meta: RecordMeta,
    pub content: Option<RecordContent>,
    /// Set when an abuse rule flagged the request: a review item is written
    /// with the record.
    pub review: Option<ReviewFlag>,
}

/// A review item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    pub record_id: RecordId,
    pub tenant: TenantId,
    pub severity: Severity,
    pub action: RuleAction,
    pub verdicts: Vec<Verdict>,
    pub content_kept: bool,
    pub status: String,
    pub assignee: Option<String>,
    pub resolution: Option<String>,
    /// Notes as stored: a JSON array of `{author, at, text}`.
    pub notes: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A key or tenant suspended after confirmed abuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub id: i64,
    pub tenant: TenantId,
    /// `None`: the whole tenant.
    pub key_id: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub lifted_at: Option<OffsetDateTime>,
    pub lifted_by: Option<String>,
}

/// A principal to create.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub name: String,
    pub role: Role,
    pub token_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// Which review items to list, oldest first after the cursor.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub status: Option<String>,
    pub tenant: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<Severity>,
    pub assignee: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Items created after this `(created_at, record id)`.
    pub after: Option<(OffsetDateTime, RecordId)>,
    pub limit: i64,
    /// Only items still live at this instant: not past their expiry, or
    /// kept by an active legal hold.
    pub live_at: Option<OffsetDateTime>,
}

/// A change to a review item.
#[derive(Debug, Clone)]
pub enum ItemChange {
    Assign(String),
    Note {
        author: String,
        text: String,
    },
    /// Resolve; a confirmation may suspend the key or tenant in the same
    /// transaction (both happen, or neither).
    Resolve {
        resolution: String,
        by: String,
        suspension: Option<Box<NewSuspension>>,
    },
}

/// A suspension to add, with its audit entry.
#[derive(Debug, Clone)]
pub struct NewSuspension {
    pub tenant: TenantId,
    /// `None`: the whole tenant.
    pub key_id: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub audit: AuditEvent,
}

/// Which audit entries to read, in sequence order after `after`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub after: i64,
    pub limit: i64,
}

/// What opens a review item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFlag {
    pub verdicts: Vec<Verdict>,
    pub action: RuleAction,
    pub severity: Severity,
    /// The record's content is stored with it (never for ZDR tenants).
    pub content_kept: bool,
    /// The item expires with the record's content (the review period).
    pub expires_at: OffsetDateTime,
}

impl ReviewFlag {
    /// The flag for these verdicts, or `None` when there are none.
    pub fn from_verdicts(
        verdicts: Vec<Verdict>,
        content_kept: bool,
        expires_at: OffsetDateTime,
    ) -> Option<Self> {
        let (action, severity) = crate::abuse::strongest(&verdicts)?;
        Some(Self {
            verdicts,
            action,
            severity,
            content_kept,
            expires_at,
        })
    }

    /// This flag added to an item that already has `verdicts`.
    pub fn merged_with(
        &self,
        severity: Severity,
        action: RuleAction,
        verdicts: Vec<Verdict>,
    ) -> Self {
        let mut all = verdicts;
        all.extend(self.verdicts.iter().cloned());
        Self {
            verdicts: all,
            action: action.max(self.action),
            severity: severity.max(self.severity),
            content_kept: self.content_kept,
            expires_at: self.expires_at,
        }
    }

    pub fn reasons_json(&self) -> String {
        serde_json::to_string(&self.verdicts).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// A stored consent event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsentEvent {
    pub seq: i64,
    pub event: ConsentEvent,
}

/// Which records the training export reads: received in `[since, until)`,
/// after the cursor `after` in `(received_at, id)` order, still live at `now`.
#[derive(Debug, Clone, Copy)]
pub struct ExportQuery {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub now: OffsetDateTime,
    pub after: Option<(OffsetDateTime, RecordId)>,
    /// The export reading: its own marks count, as do finished exports'.
    pub export_id: Uuid,
}

/// A record tagged usable for training, with its content when that is
/// still live.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportCandidate {
    pub id: RecordId,
    pub tenant: TenantId,
    pub received_at: OffsetDateTime,
    pub path: String,
    pub status: u16,
    pub outcome: Outcome,
    pub streamed: bool,
    pub basis: TrainingBasis,
    /// When the record's metadata expires (an export mark expires with it).
    pub expires_at: OffsetDateTime,
    /// `None` when the content has expired or was never stored.
    pub content: Option<RecordContent>,
    /// The export that already took this record: this one, or one that
    /// finished (an abandoned export's marks are ignored).
    pub exported_by: Option<Uuid>,
}

/// How many live records in a time range got each training tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagCount {
    pub tag: TrainingTag,
    pub count: i64,
}

/// What a sweep did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Another replica holds the sweep lock: nothing was done.
    pub skipped_locked: bool,
    /// Rows removed per table (partition drops included).
    pub rows: std::collections::BTreeMap<&'static str, u64>,
    /// Whole partitions dropped.
    pub partitions: Vec<String>,
}

impl SweepReport {
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    fn add(&mut self, table: &'static str, rows: u64) {
        *self.rows.entry(table).or_default() += rows;
    }
}

/// Retention health of one table, for metrics and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub table: &'static str,
    /// Rows whose `expires_at` has passed (held ones included).
    pub past_expiry: i64,
    /// `received_at` of the live row that expires first.
    pub oldest_live_received_at: Option<OffsetDateTime>,
}

/// A legal hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: i64,
    pub tenant: TenantId,
    /// `None`: every record of the tenant.
    pub record: Option<RecordId>,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub released_at: Option<OffsetDateTime>,
    pub released_by: Option<String>,
}

impl LegalHold {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.released_at.is_none() && self.ends_at > now
    }
}

/// A kept copy of a fine-tune file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCopy {
    pub tenant: TenantId,
    /// The upstream's file id.
    pub file_id: String,
    pub object_key: String,
    pub filename: Option<String>,
    pub purpose: String,
    pub bytes: i64,
    pub sha256: String,
    /// The upload's record.
    pub record_id: RecordId,
    pub created_at: OffsetDateTime,
    /// The blob is sealed under the file's key (said here, not by its
    /// bytes); `None` for copies kept before this was recorded.
    pub sealed: Option<bool>,
}

/// An upstream object in the registry: who created it, through which
/// route and exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamObject {
    pub route: String,
    pub object_id: String,
    pub kind: String,
    pub tenant: TenantId,
    /// The exchange that created (or first reported) it.
    pub record_id: RecordId,
    /// The collection's path as the creating request gave it, after the
    /// route's prefix: the object is at `{collection}/{object_id}`.
    pub collection: String,
    pub created_at: OffsetDateTime,
    /// When the gateway deletes it upstream (its profile's content
    /// retention), if ever.
    pub purge_at: Option<OffsetDateTime>,
    pub deleted_at: Option<OffsetDateTime>,
}

/// A hold to place.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub tenant: TenantId,
    pub record: Option<RecordId>,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> &'static str;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
    /// The PostgreSQL cluster this store lives in (`system_identifier`),
    /// when it is one and the role may read it.
    async fn cluster_id(&self) -> Option<String> {
        None
    }

    async fn ping(&self) -> Result<(), StoreError>;

    /// Make sure records expiring up to `until` have somewhere to go
    /// (PostgreSQL partitions; nothing to do on SQLite).
    async fn prepare_partitions(
        &self,
        now: OffsetDateTime,
        content_until: OffsetDateTime,
        metadata_until: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Insert a batch in one transaction. Idempotent: a record id already
    /// stored is skipped, so a replayed batch never duplicates.
    async fn insert_records(&self, records: &[Record]) -> Result<(), StoreError>;

    async fn get_record(&self, id: RecordId) -> Result<Option<Record>, StoreError>;

    /// A tenant's records, newest first.
    async fn list_records(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<RecordMeta>, StoreError>;

    async fn count_records(&self) -> Result<i64, StoreError>;

    /// Up to `limit` content rows in record-id order after `after`: every
    /// stored body, for checking it against the key store.
    async fn content_page(
        &self,
        after: Option<RecordId>,
        limit: i64,
    ) -> Result<Vec<StoredContent>, StoreError>;

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

    /// Append one entry to the audit chain. Returns its sequence number.
    async fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError>;

    /// Audit entries with a sequence number above `after`, in order.
    async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    /// Records tagged usable for training, streamed in `(received_at, id)`
    /// order (constant memory however many there are). Never a ZDR record.
    fn export_candidates(
        &self,
        query: ExportQuery,
    ) -> BoxStream<'_, Result<ExportCandidate, StoreError>>;

    /// Live records received in `[since, until)`, counted by training tag.
    async fn training_tag_counts(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<TagCount>, StoreError>;

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

    /// Audit entries matching `filter`.
    async fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

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

    /// Register objects created upstream; one already registered (on the
    /// same route) keeps its first owner.
    async fn insert_objects(&self, objects: &[UpstreamObject]) -> Result<(), StoreError>;

    /// The registry rows of `ids` on `route` (deleted ones included).
    async fn objects(&self, route: &str, ids: &[String])
        -> Result<Vec<UpstreamObject>, StoreError>;

    /// Live objects whose `purge_at` has passed, oldest first.
    async fn objects_to_purge(
        &self,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<UpstreamObject>, StoreError>;

    /// The owner deleted an object: the row expires `keep_for` later
    /// (metadata retention). `false` when it is not registered.
    async fn mark_object_deleted(
        &self,
        route: &str,
        object_id: &str,
        at: OffsetDateTime,
        keep_for: time::Duration,
    ) -> Result<bool, StoreError>;

    /// Index a kept file copy (replacing one with the same id).
    async fn insert_file_copy(&self, copy: &FileCopy) -> Result<(), StoreError>;

    async fn file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
    ) -> Result<Option<FileCopy>, StoreError>;

    /// The upload records of every kept copy (whose file keys are in use).
    async fn file_copy_records(&self) -> Result<Vec<RecordId>, StoreError>;

    /// Forget a copy and audit it in one transaction; `false` when none.
    async fn delete_file_copy(
        &self,
        tenant: &TenantId,
        file_id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Record that an export finished: from now on its marks hide records
    /// from later exports.
    async fn finish_export(&self, export_id: Uuid, at: OffsetDateTime) -> Result<(), StoreError>;

    /// The audit chain's head as the store last wrote it: `(seq, hash)`.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;

    /// Mark records as taken by `export_id` (replacing an earlier mark).
    async fn mark_exported(
        &self,
        export_id: Uuid,
        at: OffsetDateTime,
        records: &[(RecordId, OffsetDateTime)],
    ) -> Result<(), StoreError>;
}

/// `notes` (a JSON array) with one more note.
fn append_note(notes: &str, author: &str, text: &str, at: OffsetDateTime) -> String {
    let mut list: Vec<serde_json::Value> = serde_json::from_str(notes).unwrap_or_default();
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    list.push(serde_json::json!({"author": author, "at": at, "text": text}));
    serde_json::Value::Array(list).to_string()
}

/// Parse the stored text columns of a review item.
fn review_fields(
    severity: &str,
    action: &str,
    reasons: &str,
) -> Result<(Severity, RuleAction, Vec<Verdict>), StoreError> {
    let severity = Severity::parse(severity)
        .ok_or_else(|| StoreError::Corrupt(format!("severity {severity:?}")))?;
    let action = match action {
        "flag" => RuleAction::Flag,
        "block" => RuleAction::Block,
        other => return Err(StoreError::Corrupt(format!("action {other:?}"))),
    };
    let verdicts = serde_json::from_str(reasons)
        .map_err(|e| StoreError::Corrupt(format!("review reasons: {e}")))?;
    Ok((severity, action, verdicts))
}

/// A `(usable, basis, count)` row as a [`TagCount`].
fn tag_count((usable, basis, count): (bool, String, i64)) -> Result<TagCount, StoreError> {
    let basis = TrainingBasis::parse(&basis)
        .ok_or_else(|| StoreError::Corrupt(format!("training basis {basis:?}")))?;
    Ok(TagCount {
        tag: TrainingTag { usable, basis },
        count,
    })
}

/// Open the store named by the configured URL.
pub async fn connect(config: &DatabaseConfig) -> Result<Arc<dyn Store>, StoreError> {
    let url = config.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(config).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(config).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A URL fit for an error message: any password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("*****"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".to_owned(),
    }
}
