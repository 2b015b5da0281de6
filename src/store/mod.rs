//! Persistence. One [`Store`] trait, a PostgreSQL and a SQLite
//! implementation that pass one conformance suite (`tests/api/store.rs`).
//! This module is the only one that knows sqlx; callers get [`StoreError`].

mod postgres;
mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::config::DatabaseConfig;
use crate::domain::{ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingTag};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
}

/// The part of a record kept for billing and audit (metadata retention).
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContent {
    pub request_body: Vec<u8>,
    pub request_truncated: bool,
    pub response_body: Vec<u8>,
    pub response_truncated: bool,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub meta: RecordMeta,
    pub content: Option<RecordContent>,
}

/// A stored consent event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsentEvent {
    pub seq: i64,
    pub event: ConsentEvent,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"postgres"` or `"sqlite"`.
    fn backend(&self) -> &'static str;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
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

    async fn append_consent(&self, event: &ConsentEvent) -> Result<i64, StoreError>;

    /// Consent events with a sequence number above `after`, in order.
    async fn consent_events_after(&self, after: i64)
        -> Result<Vec<StoredConsentEvent>, StoreError>;

    /// One tenant's consent history, in the order it was recorded.
    async fn consent_history(&self, tenant: &TenantId) -> Result<Vec<ConsentEvent>, StoreError>;
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
