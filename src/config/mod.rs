//! Configuration: one TOML file, overridable by `CUSTODIAN__SECTION__KEY`
//! environment variables, parsed into a raw form and validated into
//! [`Config`]. Secrets never live in the file: only references to an
//! environment variable or a file that holds them.

mod console;
mod env;
mod raw;
mod secret;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use toml::Spanned;
use url::Url;

use crate::domain::TenantId;
use crate::policy::{Retention, RetentionError};

pub use console::{ClaimMapping, ConsoleConfig, OidcConfig, OIDC_CALLBACK_PATH};
use env::*;
use raw::*;
pub use raw::{parse_duration, parse_instant};
pub use secret::Secret;
pub use validate::policy_version;
use validate::*;

pub const ENV_PREFIX: &str = "CUSTODIAN__";

/// Records per batch insert, at most.
pub const MAX_BATCH_SIZE: usize = 1_000;

/// Retention periods beyond this are a mistake, not a policy.
pub const MAX_RETENTION: Duration = Duration::from_secs(3_660 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: after applying environment overrides ({vars}): {source}")]
    Override {
        path: PathBuf,
        vars: String,
        source: Box<toml::de::Error>,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Where the caller's API key is read from, and the error shape its SDK expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// `Authorization: Bearer <key>`; errors as `{"error": {"message","type","code"}}`.
    Openai,
    /// `x-api-key: <key>`; errors as `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

impl Flavor {
    /// The other flavor, whose key header SDKs sometimes use instead.
    pub fn other(self) -> Self {
        match self {
            Self::Openai => Self::Anthropic,
            Self::Anthropic => Self::Openai,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub database: DatabaseConfig,
    pub capture: CaptureConfig,
    pub writer: WriterConfig,
    pub spool: SpoolConfig,
    pub consent: ConsentConfig,
    pub sweeper: SweeperConfig,
    pub files: FilesConfig,
    /// Inline abuse rules, compiled.
    pub rules: Arc<crate::policy::rules::RuleSet>,
    pub review: ReviewConfig,
    /// The asynchronous moderation classifier, when configured.
    pub classifier: Option<ClassifierConfig>,
    /// Encryption of stored content, when turned on.
    pub encryption: Option<EncryptionConfig>,
    pub logging: LoggingConfig,
    pub auth: AuthConfig,
    pub attest: AttestConfig,
    pub console: ConsoleConfig,
    pub routes: Vec<Route>,
    pub profiles: BTreeMap<String, Profile>,
    pub tenants: Vec<Tenant>,
    /// Hash of `policy_document`: the effective policy as canonical JSON.
    pub policy_version: String,
    pub policy_document: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_request_body_bytes: usize,
    /// Decoded bytes of a request body the text rules read; beyond them the
    /// body is unscannable (the profile's `unscannable` decides).
    pub max_scan_bytes: usize,
    /// Bytes of request bodies held whole in memory, all requests together;
    /// a request that would exceed it waits briefly, then gets 503.
    pub max_buffered_bytes: usize,
    /// Requests in flight (streams included) beyond which new ones get 503.
    pub max_concurrent_requests: usize,
    pub header_read_timeout: Duration,
    /// Request line and headers, in bytes; beyond it, 431.
    pub max_header_bytes: usize,
    /// Header fields per request; beyond it, 431.
    pub max_headers: usize,
    /// The longest a client may pause while sending a request body; then 408.
    pub client_body_timeout: Duration,
    pub shutdown_drain: Duration,
    /// Peers whose `x-forwarded-for` is believed (load balancers, reverse
    /// proxies); from anyone else the audit source is the peer alone.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub migrate_on_start: bool,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    pub partitions_ahead: Duration,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("migrate_on_start", &self.migrate_on_start)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub max_body_bytes: usize,
    /// zstd level for the bodies before they are sealed; 0: as captured.
    pub compression_level: i32,
}

impl CaptureConfig {
    /// zstd's first fast level: 1+1 KiB to 644 B in 4.4 µs (`benches/codec.rs`).
    pub const DEFAULT_COMPRESSION_LEVEL: i32 = -1;
    /// Below -7 zstd hardly compresses; above 6 a 1 MiB body takes 10s of ms.
    pub const MIN_COMPRESSION_LEVEL: i32 = -7;
    pub const MAX_COMPRESSION_LEVEL: i32 = 6;
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub queue_capacity: usize,
    /// Bytes of records in memory between the exchanges and the store.
    pub queue_max_bytes: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_enqueue_wait: Duration,
    pub max_retry_backoff: Duration,
    /// A store write slower than this counts as failed (the batch is spooled).
    pub store_timeout: Duration,
    /// How long the writer waits at shutdown for exchanges still open after
    /// the drain (their records), besides writing what is queued.
    pub shutdown_grace: Duration,
}

/// What signs attestation reports (Ed25519 seed, 64 hex digits).
#[derive(Debug, Clone, Default)]
pub struct AttestConfig {
    pub signing_key: Option<Secret>,
}

/// Encryption at rest: where the wrapped data keys live and the KEKs.
#[derive(Clone)]
pub struct EncryptionConfig {
    /// A directory apart from the database (and from its backups); used
    /// when `key_store_url` is not given.
    pub key_dir: PathBuf,
    /// A PostgreSQL database of its own for the keys (several replicas).
    pub key_store_url: Option<String>,
    /// The key-encryption key new data keys are wrapped with: 64 hex digits.
    pub kek: Secret,
    /// Earlier KEKs still accepted for unwrapping during a rotation.
    pub previous_keks: Vec<Secret>,
    /// How often each gateway reloads the key store (keys made or
    /// destroyed by other replicas) and makes the coming days' keys.
    pub refresh_interval: Duration,
}

impl fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("key_dir", &self.key_dir)
            .field(
                "key_store_url",
                &self.key_store_url.as_deref().map(redact_url),
            )
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

/// The disk spool for records the store cannot take now.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Off: records wait in memory while the store is down (and are lost
    /// beyond the queue, counted).
    pub enabled: bool,
    pub dir: std::path::PathBuf,
    /// Cap on the spool's size on disk.
    pub max_bytes: u64,
    /// A segment is closed for replay beyond this size.
    pub segment_bytes: u64,
    /// How often the replay task looks for spooled records.
    #[serde(deserialize_with = "de_duration")]
    pub replay_interval: Duration,
    /// When neither the store nor the spool can take records: keep serving
    /// and count each record lost, or refuse new requests with 503.
    pub when_unavailable: WhenUnrecordable,
    /// Every record is written to the spool (fsync) before its response
    /// ends: nothing answered is lost even on kill -9, at a latency cost.
    pub journal: bool,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: "custodian-spool".into(),
            max_bytes: 1024 * 1024 * 1024,
            segment_bytes: 16 * 1024 * 1024,
            replay_interval: Duration::from_secs(1),
            when_unavailable: WhenUnrecordable::FailOpen,
            journal: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnrecordable {
    #[default]
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone)]
pub struct ConsentConfig {
    pub refresh_interval: Duration,
    pub max_staleness: Duration,
}

/// How a profile treats the asynchronous classifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierMode {
    /// Not classified.
    #[default]
    Off,
    /// Classified after the response; when the classifier cannot run, the
    /// request is still served and counted as unchecked.
    FailOpen,
    /// Classified after the response; while the classifier is down, new
    /// requests are refused with 503.
    FailClosed,
}

/// A moderation endpoint in the OpenAI `/v1/moderations` shape.
#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    pub url: url::Url,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub queue_capacity: usize,
    /// Jobs one tenant may have queued or running (`tenant_share` of the
    /// queue): one tenant's burst cannot take every other tenant's checks.
    pub tenant_queue_limit: usize,
    /// A category scoring at or above its threshold (or this default) flags.
    pub threshold: f64,
    pub thresholds: BTreeMap<String, f64>,
    pub severity: crate::domain::verdict::Severity,
}

/// What resolving a review item as confirmed abuse does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConfirm {
    /// Nothing beyond the resolution.
    #[default]
    None,
    /// Suspend the API key that sent the request.
    SuspendKey,
    /// Suspend the whole tenant.
    SuspendTenant,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    pub on_confirm: OnConfirm,
}

/// Where copies of fine-tune files are kept.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// A local directory, or an object-store URL (`s3://bucket/prefix`).
    pub location: String,
    /// An upload that started longer ago than this and left a blob under
    /// `pending/` (or an unused file key) was interrupted: the sweeper
    /// removes what it left. Longer than any upload takes.
    pub pending_max_age: Duration,
}

/// The retention sweeper that runs inside `serve`.
#[derive(Debug, Clone)]
pub struct SweeperConfig {
    pub enabled: bool,
    /// Time between sweeps; also the most a row outlives its expiry.
    pub interval: Duration,
    /// Rows per delete statement (each its own short transaction).
    pub batch_size: usize,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub default_tenant: Option<usize>,
    pub fingerprint_key: Option<Secret>,
    /// Keys the hash kept for a caller's end-user id (none kept without it).
    pub end_user_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub prefix: String,
    pub upstream: Url,
    pub profile: String,
    pub flavor: Flavor,
    pub upstream_key: Option<Secret>,
    /// What happens to a request naming an upstream object the registry
    /// does not know; `None`: refused where tenants share the upstream
    /// credential, forwarded where the caller's own credential is used.
    pub unknown_objects: Option<UnknownObjects>,
    /// What happens to a request for an endpoint the gateway does not
    /// model (it could expose the account's state): `None`, refused where
    /// tenants share the upstream credential, forwarded otherwise.
    pub unknown_endpoints: Option<UnknownObjects>,
}

/// Requests naming an object created outside the gateway (or an endpoint
/// it does not model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownObjects {
    /// 404, as for an object that does not exist.
    Refuse,
    /// Forwarded: the upstream decides.
    Forward,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    #[serde(serialize_with = "ser_duration")]
    pub content_retention: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub metadata_retention: Duration,
    #[serde(with = "time::serde::rfc3339::option")]
    pub training_cutover: Option<OffsetDateTime>,
    pub zero_data_retention: bool,
    /// ZDR requests flagged by a rule keep their content for review.
    pub safety_retention: bool,
    pub classifier: ClassifierMode,
    /// What happens to a body the rules cannot read in full.
    pub unscannable: crate::policy::rules::Unscannable,
    /// Upstream objects that hold payloads (files other than fine-tune
    /// files, stored responses and completions, conversations): kept until
    /// their owner deletes them, or deleted upstream when the content
    /// retention ends.
    pub upstream_objects: UpstreamObjects,
}

/// What becomes of upstream objects that hold payloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamObjects {
    /// Kept until the owner deletes them (as the provider does).
    #[default]
    Keep,
    /// Deleted upstream by the gateway once the content retention ends.
    Expire,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub profile: Option<String>,
    pub zero_data_retention: bool,
    pub content_retention: Option<Duration>,
    pub metadata_retention: Option<Duration>,
    pub managed_key_hashes: Vec<String>,
    pub passthrough_fingerprints: Vec<String>,
    /// The effective policy of this tenant on each route, by route index.
    pub policies: Vec<Arc<EffectivePolicy>>,
    /// The tenant's own upstream credential on each route (by index), used
    /// for its managed keys instead of the route's shared one.
    pub upstream_keys: Vec<Option<Secret>>,
}

/// What applies to one tenant on one route: computed once at load.
#[derive(Debug, Clone)]
pub struct EffectivePolicy {
    pub profile: Arc<str>,
    pub retention: Retention,
    pub zero_data_retention: bool,
    /// Keep the content of a flagged ZDR request for the review period.
    pub safety_retention: bool,
    pub classifier: ClassifierMode,
    pub unscannable: crate::policy::rules::Unscannable,
    pub upstream_objects: UpstreamObjects,
    pub training_cutover: Option<OffsetDateTime>,
    /// The retention receipts, by what is kept (computed once at load).
    retention_receipts: [HeaderValue; 3],
}

impl EffectivePolicy {
    /// What content of an exchange under this policy is kept.
    pub fn content_kept(&self, flagged: bool) -> crate::policy::ContentKept {
        crate::policy::content_kept(self.zero_data_retention, self.safety_retention, flagged)
    }

    /// When an exchange under this policy expires (`policy::record_expiry`).
    pub fn expiry(
        &self,
        received_at: OffsetDateTime,
        flagged: bool,
    ) -> crate::policy::RecordExpiry {
        crate::policy::record_expiry(
            &self.retention,
            self.zero_data_retention,
            self.safety_retention,
            received_at,
            flagged,
        )
    }

    /// The `x-custodian-retention` receipt for an exchange that keeps `kept`.
    pub fn retention_receipt(&self, kept: crate::policy::ContentKept) -> &HeaderValue {
        use crate::policy::ContentKept;
        let i = match kept {
            ContentKept::Kept => 0,
            ContentKept::ForSafetyReview => 1,
            ContentKept::NotKept => 2,
        };
        &self.retention_receipts[i]
    }
}

impl Config {
    /// Read, override from the process environment, and validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text, std::env::vars())
    }

    /// Parse `text` (named `path` in errors) with the given environment.
    pub fn from_toml(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        };
        // The file alone first, so errors in it carry its line and column.
        let raw: RawConfig = toml::from_str(text).map_err(parse_err)?;
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut overrides: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        overrides.sort();
        if overrides.is_empty() {
            return Validator {
                path,
                text,
                env: &env,
            }
            .validate(raw);
        }
        let merged = apply_overrides(path, text, &overrides)?;
        let raw: RawConfig = toml::from_str(&merged).map_err(|source| ConfigError::Override {
            path: path.to_owned(),
            vars: override_names(&overrides),
            source: Box::new(source),
        })?;
        // Line numbers now refer to the merged document, so name it as such.
        let merged_path = PathBuf::from(format!(
            "{} (merged with {})",
            path.display(),
            override_names(&overrides)
        ));
        Validator {
            path: &merged_path,
            text: &merged,
            env: &env,
        }
        .validate(raw)
    }

    /// The longest retention of any profile: how far ahead the store must be ready.
    pub fn max_retention(&self) -> Retention {
        let mut max = Retention {
            content: Duration::ZERO,
            metadata: Duration::ZERO,
        };
        for p in self.profiles.values() {
            max.content = max.content.max(p.content_retention);
            max.metadata = max.metadata.max(p.metadata_retention);
        }
        max
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
