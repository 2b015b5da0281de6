//! Persistence. One [`Store`] trait, a PostgreSQL and a SQLite
//! implementation that pass one conformance suite (`tests/api/store.rs`).
//! This module is the only one that knows sqlx; callers get [`StoreError`].

mod access;
mod audit;
mod consent;
mod objects;
mod postgres;
pub mod proof;
mod records;
pub mod registry;
mod retention;
mod review;
mod sessions;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::domain::access::{ConsoleSession, Principal, Role};
use crate::domain::audit::{AuditEntry, AuditEvent};
use crate::domain::objects::{FileCopy, UpstreamObject};
use crate::domain::records::{Record, RecordContent, RecordMeta, StoredContent, Usage};
use crate::domain::review::{LegalHold, ReviewFlag, ReviewItem, Suspension};
use crate::domain::verdict::{RuleAction, Severity, Verdict};
use crate::domain::{ConsentEvent, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag};

pub use access::AccessStore;
pub use audit::AuditStore;
pub use consent::ConsentStore;
pub use objects::ObjectStore;
pub use postgres::{cluster_id as postgres_cluster_id, PgStore};
pub use proof::ProofStore;
pub use records::RecordStore;
pub use retention::{Erased, ErasedFile, Erasure, KeptByHold, RetentionStore};
pub use review::ReviewStore;
pub use sessions::{PendingSignIn, SessionStore};
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
    /// True when a write broke a unique constraint (a name taken meanwhile).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
    }

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
    /// Items after this position in `order`: `(severity, created_at,
    /// record id)`, the severity only in [`ReviewOrder::Severity`].
    pub after: Option<(Option<Severity>, OffsetDateTime, RecordId)>,
    pub order: ReviewOrder,
    pub limit: i64,
    /// Only items still live at this instant: not past their expiry, or
    /// kept by an active legal hold.
    pub live_at: Option<OffsetDateTime>,
}

/// The order review items are listed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReviewOrder {
    /// Oldest first.
    #[default]
    Created,
    /// Most severe first, oldest first within a severity (the order
    /// [`ReviewStore::claim_next_item`] claims in).
    Severity,
}

/// SQL ranking a review item's severity, most severe first (0). Migration
/// 0015 indexes exactly this expression: change both together.
pub(crate) const SEVERITY_RANK: &str = "CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
     WHEN 'medium' THEN 2 ELSE 3 END";

/// The rank [`SEVERITY_RANK`] gives `severity`.
pub(crate) fn severity_rank(severity: Severity) -> i64 {
    match severity {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
    }
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
pub trait Store:
    RecordStore
    + ConsentStore
    + AuditStore
    + RetentionStore
    + ReviewStore
    + AccessStore
    + ObjectStore
    + ProofStore
    + SessionStore
    + Send
    + Sync
    + 'static
{
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
        Err(StoreError::UnsupportedUrl(crate::config::redact_url(url)))
    }
}
