//! Configuration: one TOML file, overridable by `CUSTODIAN__SECTION__KEY`
//! environment variables, parsed into a raw form and validated into
//! [`Config`]. Secrets never live in the file: only references to an
//! environment variable or a file that holds them.

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

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
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
    pub rules: Arc<crate::abuse::RuleSet>,
    pub review: ReviewConfig,
    /// The asynchronous moderation classifier, when configured.
    pub classifier: Option<ClassifierConfig>,
    /// Encryption of stored content, when turned on.
    pub encryption: Option<EncryptionConfig>,
    pub logging: LoggingConfig,
    pub auth: AuthConfig,
    pub routes: Vec<Route>,
    pub profiles: BTreeMap<String, Profile>,
    pub tenants: Vec<Tenant>,
    /// Hash of the effective policy (profiles, routes, tenants' policy fields).
    pub policy_version: String,
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
            .field("url", &crate::store::redact_url(&self.url))
            .field("migrate_on_start", &self.migrate_on_start)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub max_body_bytes: usize,
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
                &self.key_store_url.as_deref().map(crate::store::redact_url),
            )
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    #[serde(default)]
    enabled: bool,
    key_dir: Option<PathBuf>,
    key_store_url: Option<String>,
    kek: Option<Spanned<RawSecretRef>>,
    #[serde(default)]
    previous_keks: Vec<Spanned<RawSecretRef>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    refresh_interval: Option<Duration>,
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
    pub severity: crate::abuse::Severity,
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
    pub unscannable: crate::abuse::Unscannable,
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
    pub unscannable: crate::abuse::Unscannable,
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

/// The file with the environment overrides applied, as TOML text.
fn apply_overrides(
    path: &Path,
    text: &str,
    overrides: &[(String, String)],
) -> Result<String, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    for (var, value) in overrides {
        let keys: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        set_path(&mut table, &keys, parse_env_value(value));
    }
    toml::to_string(&table).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: 0,
        key: override_names(overrides),
        message: e.to_string(),
    })
}

fn override_names(overrides: &[(String, String)]) -> String {
    overrides
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `true`, `42`, `1.5` become typed values; anything else stays a string.
fn parse_env_value(value: &str) -> toml::Value {
    #[derive(Deserialize)]
    struct Probe {
        v: toml::Value,
    }
    match toml::from_str::<Probe>(&format!("v = {value}")) {
        Ok(Probe { v }) if !v.is_table() && !v.is_datetime() => v,
        _ => toml::Value::String(value.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

// ---------------------------------------------------------------------------
// Raw form: exactly what the file says.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    writer: RawWriter,
    #[serde(default)]
    spool: SpoolConfig,
    #[serde(default)]
    consent: RawConsent,
    #[serde(default)]
    sweeper: RawSweeper,
    #[serde(default)]
    files: RawFiles,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    review: ReviewConfig,
    classifier: Option<RawClassifier>,
    #[serde(default)]
    encryption: RawEncryption,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: SocketAddr,
    admin_listen: SocketAddr,
    max_request_body_bytes: usize,
    max_scan_bytes: usize,
    max_buffered_bytes: usize,
    max_concurrent_requests: usize,
    #[serde(deserialize_with = "de_duration")]
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_headers: usize,
    #[serde(deserialize_with = "de_duration")]
    client_body_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    shutdown_drain: Duration,
    trusted_proxies: Vec<Spanned<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_request_body_bytes: 32 * 1024 * 1024,
            max_scan_bytes: 32 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_concurrent_requests: 4_096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            client_body_timeout: Duration::from_secs(30),
            shutdown_drain: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    #[serde(deserialize_with = "de_duration")]
    connect_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    first_byte_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    idle_timeout: Duration,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: String,
    migrate_on_start: bool,
    max_connections: u32,
    #[serde(deserialize_with = "de_duration")]
    connect_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    partitions_ahead: Duration,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: "sqlite://custodian.db".to_owned(),
            migrate_on_start: true,
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            partitions_ahead: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCapture {
    max_body_bytes: usize,
}

impl Default for RawCapture {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWriter {
    queue_capacity: usize,
    queue_max_bytes: usize,
    batch_size: usize,
    #[serde(deserialize_with = "de_duration")]
    flush_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    max_enqueue_wait: Duration,
    #[serde(deserialize_with = "de_duration")]
    max_retry_backoff: Duration,
    #[serde(deserialize_with = "de_duration")]
    store_timeout: Duration,
}

impl Default for RawWriter {
    fn default() -> Self {
        Self {
            queue_capacity: 20_000,
            queue_max_bytes: 256 * 1024 * 1024,
            batch_size: 200,
            flush_interval: Duration::from_millis(20),
            max_enqueue_wait: Duration::from_secs(1),
            max_retry_backoff: Duration::from_secs(5),
            store_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConsent {
    #[serde(deserialize_with = "de_duration")]
    refresh_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    max_staleness: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    severity: crate::abuse::Severity,
    #[serde(default)]
    action: crate::abuse::RuleAction,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    max_body_bytes: Option<u64>,
    max_requests_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFiles {
    location: String,
    #[serde(deserialize_with = "de_duration")]
    pending_max_age: Duration,
}

impl Default for RawFiles {
    fn default() -> Self {
        Self {
            location: "custodian-files".to_owned(),
            pending_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSweeper {
    enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    interval: Duration,
    batch_size: usize,
}

impl Default for RawSweeper {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(60),
            batch_size: 5_000,
        }
    }
}

impl Default for RawConsent {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(2),
            max_staleness: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLogging {
    format: LogFormat,
    filter: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAuth {
    default_tenant: Option<Spanned<String>>,
    fingerprint_key: Option<Spanned<RawSecretRef>>,
}

/// A reference to a secret: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    prefix: Spanned<String>,
    upstream: Spanned<String>,
    profile: Spanned<String>,
    #[serde(default = "default_flavor")]
    flavor: Flavor,
    upstream_key: Option<Spanned<RawSecretRef>>,
    unknown_objects: Option<UnknownObjects>,
    unknown_endpoints: Option<UnknownObjects>,
}

fn default_flavor() -> Flavor {
    Flavor::Openai
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(
        default = "default_content_retention",
        deserialize_with = "de_duration"
    )]
    content_retention: Duration,
    #[serde(
        default = "default_metadata_retention",
        deserialize_with = "de_duration"
    )]
    metadata_retention: Duration,
    #[serde(default, deserialize_with = "de_opt_instant")]
    training_cutover: Option<OffsetDateTime>,
    #[serde(default)]
    zero_data_retention: bool,
    #[serde(default)]
    safety_retention: bool,
    #[serde(default)]
    classifier: ClassifierMode,
    #[serde(default)]
    unscannable: crate::abuse::Unscannable,
    #[serde(default)]
    upstream_objects: UpstreamObjects,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassifier {
    url: Spanned<String>,
    api_key: Option<Spanned<RawSecretRef>>,
    model: Option<String>,
    #[serde(
        default = "default_classifier_timeout",
        deserialize_with = "de_duration"
    )]
    timeout: Duration,
    #[serde(default = "default_classifier_concurrency")]
    concurrency: usize,
    #[serde(default = "default_classifier_queue")]
    queue_capacity: usize,
    #[serde(default = "default_classifier_tenant_share")]
    tenant_share: f64,
    #[serde(default = "default_classifier_threshold")]
    threshold: f64,
    #[serde(default)]
    thresholds: BTreeMap<String, f64>,
    #[serde(default = "default_classifier_severity")]
    severity: crate::abuse::Severity,
}

fn default_classifier_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_classifier_concurrency() -> usize {
    4
}
fn default_classifier_queue() -> usize {
    1_000
}
fn default_classifier_tenant_share() -> f64 {
    0.25
}
fn default_classifier_threshold() -> f64 {
    0.5
}
fn default_classifier_severity() -> crate::abuse::Severity {
    crate::abuse::Severity::High
}

fn default_content_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_metadata_retention() -> Duration {
    Duration::from_secs(365 * 86_400)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    id: Spanned<String>,
    profile: Option<Spanned<String>>,
    #[serde(default)]
    zero_data_retention: bool,
    #[serde(default, deserialize_with = "de_opt_duration")]
    content_retention: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    metadata_retention: Option<Duration>,
    #[serde(default)]
    managed_keys: Vec<Spanned<String>>,
    #[serde(default)]
    passthrough_fingerprints: Vec<Spanned<String>>,
    /// The tenant's own upstream credential, by route name.
    #[serde(default)]
    upstream_keys: BTreeMap<String, Spanned<RawSecretRef>>,
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_opt_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let s = String::deserialize(d)?;
    parse_instant(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Durations like `"30d"`, `"12h"`, `"1m 30s"`, `"250ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. \"30d\", \"12h\", \"500ms\""))
}

/// RFC 3339 instants like `2023-03-01T00:00:00Z`.
pub fn parse_instant(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("invalid instant {s:?} ({e}); use RFC 3339, e.g. 2023-03-01T00:00:00Z")
    })
}

// ---------------------------------------------------------------------------
// Validation: raw → Config, with errors that name file, line and key.

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    env: &'a HashMap<String, String>,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: impl Into<String>,
        message: impl fmt::Display,
    ) -> Result<T, ConfigError> {
        let line = span
            .map(|s| {
                self.text[..s.start.min(self.text.len())]
                    .lines()
                    .count()
                    .max(1)
            })
            .unwrap_or(0);
        Err(ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            key: key.into(),
            message: message.to_string(),
        })
    }

    fn encryption(&self, raw: &RawEncryption) -> Result<Option<EncryptionConfig>, ConfigError> {
        if !raw.enabled {
            return Ok(None);
        }
        let Some(kek) = &raw.kek else {
            return self.err(
                None,
                "encryption.kek",
                "give the key-encryption key as { env = \"VAR\" } or { file = \"/path\" }",
            );
        };
        let kek = self.kek("encryption.kek", kek)?;
        let previous_keks = raw
            .previous_keks
            .iter()
            .map(|k| self.kek("encryption.previous_keks", k))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(url) = &raw.key_store_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return self.err(
                    None,
                    "encryption.key_store_url",
                    "must be a postgres:// URL (leave it out to keep keys in key_dir)",
                );
            }
        }
        let refresh_interval = raw.refresh_interval.unwrap_or(Duration::from_secs(30));
        if refresh_interval.is_zero() {
            return self.err(
                None,
                "encryption.refresh_interval",
                "must be greater than zero",
            );
        }
        Ok(Some(EncryptionConfig {
            key_dir: raw
                .key_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("custodian-keys")),
            key_store_url: raw.key_store_url.clone(),
            kek,
            previous_keks,
            refresh_interval,
        }))
    }

    fn kek(&self, key: &str, raw: &Spanned<RawSecretRef>) -> Result<Secret, ConfigError> {
        let kek = self.secret(key, raw)?;
        match crate::crypto::Kek::from_hex(kek.expose()) {
            Ok(_) => Ok(kek),
            Err(e) => self.err(Some(raw.span()), key, e.to_string()),
        }
    }

    fn secret(&self, key: &str, raw: &Spanned<RawSecretRef>) -> Result<Secret, ConfigError> {
        let span = Some(raw.span());
        match (&raw.get_ref().env, &raw.get_ref().file) {
            (Some(var), None) => match self.env.get(var) {
                Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                _ => self.err(span, key, format!("environment variable {var} is not set")),
            },
            (None, Some(file)) => match std::fs::read_to_string(file) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => self.err(
                    span,
                    key,
                    format!("secret file {} is empty", file.display()),
                ),
                Err(e) => self.err(span, key, format!("cannot read {}: {e}", file.display())),
            },
            _ => self.err(span, key, "give exactly one of `env` or `file`"),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let profiles = self.profiles(&raw.profiles)?;
        let routes = self.routes(&raw.routes, &profiles)?;
        let tenants = self.tenants(&raw.tenants, &routes, &profiles)?;
        let auth = self.auth(&raw.auth, &tenants)?;
        let rules = self.rules(&raw.rules)?;
        let classifier = self.classifier(raw.classifier.as_ref(), &profiles)?;
        let encryption = self.encryption(&raw.encryption)?;
        self.positive(&raw)?;
        let trusted_proxies = self.trusted_proxies(&raw.server.trusted_proxies)?;
        let policy_version = policy_version(&profiles, &routes, &tenants);
        Ok(Config {
            server: ServerConfig {
                listen: raw.server.listen,
                admin_listen: raw.server.admin_listen,
                max_request_body_bytes: raw.server.max_request_body_bytes,
                max_scan_bytes: raw.server.max_scan_bytes,
                max_buffered_bytes: raw.server.max_buffered_bytes,
                max_concurrent_requests: raw.server.max_concurrent_requests,
                header_read_timeout: raw.server.header_read_timeout,
                max_header_bytes: raw.server.max_header_bytes,
                max_headers: raw.server.max_headers,
                client_body_timeout: raw.server.client_body_timeout,
                shutdown_drain: raw.server.shutdown_drain,
                trusted_proxies,
            },
            upstream: UpstreamConfig {
                connect_timeout: raw.upstream.connect_timeout,
                first_byte_timeout: raw.upstream.first_byte_timeout,
                idle_timeout: raw.upstream.idle_timeout,
            },
            database: DatabaseConfig {
                url: raw.database.url,
                migrate_on_start: raw.database.migrate_on_start,
                max_connections: raw.database.max_connections,
                connect_timeout: raw.database.connect_timeout,
                partitions_ahead: raw.database.partitions_ahead,
            },
            capture: CaptureConfig {
                max_body_bytes: raw.capture.max_body_bytes,
            },
            writer: WriterConfig {
                queue_capacity: raw.writer.queue_capacity,
                queue_max_bytes: raw.writer.queue_max_bytes,
                batch_size: raw.writer.batch_size,
                flush_interval: raw.writer.flush_interval,
                max_enqueue_wait: raw.writer.max_enqueue_wait,
                max_retry_backoff: raw.writer.max_retry_backoff,
                store_timeout: raw.writer.store_timeout,
                shutdown_grace: Duration::from_secs(5),
            },
            spool: raw.spool.clone(),
            consent: ConsentConfig {
                refresh_interval: raw.consent.refresh_interval,
                max_staleness: raw.consent.max_staleness,
            },
            sweeper: SweeperConfig {
                enabled: raw.sweeper.enabled,
                interval: raw.sweeper.interval,
                batch_size: raw.sweeper.batch_size,
            },
            files: FilesConfig {
                location: raw.files.location,
                pending_max_age: raw.files.pending_max_age,
            },
            rules: Arc::new(rules),
            review: raw.review,
            classifier,
            encryption,
            logging: LoggingConfig {
                format: raw.logging.format,
                filter: raw.logging.filter,
            },
            auth,
            routes,
            profiles,
            tenants,
            policy_version,
        })
    }

    /// Addresses (`10.0.0.7`) or networks (`10.0.0.0/8`, `fd00::/8`).
    fn trusted_proxies(&self, raw: &[Spanned<String>]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        raw.iter()
            .map(|entry| {
                let text = entry.get_ref().trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .or_else(|_| {
                        self.err(
                            Some(entry.span()),
                            "server.trusted_proxies",
                            format!("{text:?} is not an IP address or network"),
                        )
                    })
            })
            .collect()
    }

    fn classifier(
        &self,
        raw: Option<&RawClassifier>,
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Option<ClassifierConfig>, ConfigError> {
        let Some(raw) = raw else {
            if let Some((name, _)) = profiles
                .iter()
                .find(|(_, p)| p.classifier != ClassifierMode::Off)
            {
                return self.err(
                    None,
                    format!("profiles.{name}.classifier"),
                    "needs a [classifier] section",
                );
            }
            return Ok(None);
        };
        let url = match url::Url::parse(raw.url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return self.err(
                    Some(raw.url.span()),
                    "classifier.url",
                    "must be an http(s) URL",
                )
            }
        };
        let api_key = raw
            .api_key
            .as_ref()
            .map(|s| self.secret("classifier.api_key", s))
            .transpose()?;
        let in_range = |v: f64| (0.0..=1.0).contains(&v);
        if !in_range(raw.threshold) || !raw.thresholds.values().all(|v| in_range(*v)) {
            return self.err(
                None,
                "classifier.thresholds",
                "thresholds are between 0 and 1",
            );
        }
        if !(raw.tenant_share > 0.0 && raw.tenant_share <= 1.0) {
            return self.err(
                None,
                "classifier.tenant_share",
                "is a fraction of the queue, above 0 and at most 1",
            );
        }
        if raw.concurrency == 0 || raw.queue_capacity == 0 || raw.timeout.is_zero() {
            return self.err(
                None,
                "classifier",
                "concurrency, queue_capacity and timeout must be greater than zero",
            );
        }
        Ok(Some(ClassifierConfig {
            url,
            api_key,
            model: raw.model.clone(),
            timeout: raw.timeout,
            concurrency: raw.concurrency,
            queue_capacity: raw.queue_capacity,
            // At least one place per tenant, however small the queue.
            tenant_queue_limit: ((raw.queue_capacity as f64 * raw.tenant_share).ceil() as usize)
                .max(1),
            threshold: raw.threshold,
            thresholds: raw.thresholds.clone(),
            severity: raw.severity,
        }))
    }

    /// Compile the rules; a bad one is reported at its `name` line.
    fn rules(&self, raw: &[RawRule]) -> Result<crate::abuse::RuleSet, ConfigError> {
        let specs: Vec<crate::abuse::RuleSpec> = raw
            .iter()
            .map(|r| crate::abuse::RuleSpec {
                name: r.name.get_ref().clone(),
                severity: r.severity,
                action: r.action,
                keywords: r.keywords.clone(),
                patterns: r.patterns.clone(),
                max_body_bytes: r.max_body_bytes,
                max_requests_per_minute: r.max_requests_per_minute,
            })
            .collect();
        crate::abuse::RuleSet::compile(&specs).or_else(|e| {
            let span = raw
                .iter()
                .find(|r| *r.name.get_ref() == e.rule)
                .map(|r| r.name.span());
            self.err(span, "rules", e)
        })
    }

    fn positive(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let checks = [
            (
                "server.max_request_body_bytes",
                raw.server.max_request_body_bytes,
            ),
            ("server.max_scan_bytes", raw.server.max_scan_bytes),
            ("writer.queue_capacity", raw.writer.queue_capacity),
            ("writer.queue_max_bytes", raw.writer.queue_max_bytes),
            ("writer.batch_size", raw.writer.batch_size),
            ("sweeper.batch_size", raw.sweeper.batch_size),
            ("server.max_headers", raw.server.max_headers),
            ("spool.max_bytes", raw.spool.max_bytes as usize),
            ("spool.segment_bytes", raw.spool.segment_bytes as usize),
            (
                "server.max_concurrent_requests",
                raw.server.max_concurrent_requests,
            ),
            (
                "database.max_connections",
                raw.database.max_connections as usize,
            ),
        ];
        for (key, value) in checks {
            if value == 0 {
                return self.err(None, key, "must be greater than zero");
            }
        }
        // One request's held body must fit in the budget, or it would wait
        // for room that never comes.
        let held = raw
            .server
            .max_scan_bytes
            .min(raw.server.max_request_body_bytes)
            .max(
                raw.capture
                    .max_body_bytes
                    .min(raw.server.max_request_body_bytes),
            );
        if raw.server.max_buffered_bytes < held {
            return self.err(
                None,
                "server.max_buffered_bytes",
                format!("must be at least the body one request holds ({held} bytes: server.max_scan_bytes or capture.max_body_bytes, within server.max_request_body_bytes)"),
            );
        }
        if raw.server.max_header_bytes < 8 * 1024 {
            return self.err(None, "server.max_header_bytes", "must be at least 8192");
        }
        if raw.spool.journal && !raw.spool.enabled {
            return self.err(None, "spool.journal", "needs spool.enabled = true");
        }
        if raw.server.max_concurrent_requests > 1_000_000 {
            return self.err(
                None,
                "server.max_concurrent_requests",
                "must be at most 1000000",
            );
        }
        if raw.writer.batch_size > MAX_BATCH_SIZE {
            // 27 bound parameters per record: beyond this SQLite's limit is near.
            return self.err(
                None,
                "writer.batch_size",
                format!("must be at most {MAX_BATCH_SIZE}"),
            );
        }
        for (key, value) in [
            ("consent.refresh_interval", raw.consent.refresh_interval),
            ("sweeper.interval", raw.sweeper.interval),
            ("server.header_read_timeout", raw.server.header_read_timeout),
            ("server.client_body_timeout", raw.server.client_body_timeout),
            (
                "upstream.first_byte_timeout",
                raw.upstream.first_byte_timeout,
            ),
            ("upstream.idle_timeout", raw.upstream.idle_timeout),
            ("files.pending_max_age", raw.files.pending_max_age),
        ] {
            if value.is_zero() {
                return self.err(None, key, "must be greater than zero");
            }
        }
        if raw.database.partitions_ahead > Duration::from_secs(366 * 86_400) {
            return self.err(None, "database.partitions_ahead", "must be at most 366d");
        }
        if raw.consent.max_staleness < raw.consent.refresh_interval {
            return self.err(
                None,
                "consent.max_staleness",
                "must be at least consent.refresh_interval",
            );
        }
        Ok(())
    }

    fn profiles(
        &self,
        raw: &BTreeMap<String, RawProfile>,
    ) -> Result<BTreeMap<String, Profile>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, p) in raw {
            let retention = Retention {
                content: p.content_retention,
                metadata: p.metadata_retention,
            };
            if retention.metadata > MAX_RETENTION {
                return self.err(
                    None,
                    format!("profiles.{name}.metadata_retention"),
                    "must be at most 3660d",
                );
            }
            if let Err(e) = retention.validated() {
                return self.err(None, format!("profiles.{name}"), e);
            }
            out.insert(
                name.clone(),
                Profile {
                    content_retention: p.content_retention,
                    metadata_retention: p.metadata_retention,
                    training_cutover: p.training_cutover,
                    zero_data_retention: p.zero_data_retention,
                    safety_retention: p.safety_retention,
                    classifier: p.classifier,
                    unscannable: p.unscannable,
                    upstream_objects: p.upstream_objects,
                },
            );
        }
        Ok(out)
    }

    fn routes(
        &self,
        raw: &[RawRoute],
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Vec<Route>, ConfigError> {
        if raw.is_empty() {
            return self.err(None, "routes", "at least one [[routes]] entry is required");
        }
        let mut out: Vec<Route> = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let key = |field: &str| format!("routes[{i}].{field}");
            let prefix = r.prefix.get_ref();
            if !prefix.starts_with('/') || !prefix.ends_with('/') {
                return self.err(
                    Some(r.prefix.span()),
                    key("prefix"),
                    format!("{prefix:?} must start and end with '/'"),
                );
            }
            if out.iter().any(|o| &o.prefix == prefix) {
                return self.err(
                    Some(r.prefix.span()),
                    key("prefix"),
                    format!("{prefix:?} is used by another route"),
                );
            }
            let mut upstream = match Url::parse(r.upstream.get_ref()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => u,
                Ok(_) => {
                    return self.err(
                        Some(r.upstream.span()),
                        key("upstream"),
                        "must be an http(s) URL without a query",
                    )
                }
                Err(e) => return self.err(Some(r.upstream.span()), key("upstream"), e),
            };
            if !upstream.path().ends_with('/') {
                let path = format!("{}/", upstream.path());
                upstream.set_path(&path);
            }
            if !profiles.contains_key(r.profile.get_ref()) {
                return self.err(
                    Some(r.profile.span()),
                    key("profile"),
                    format!("unknown profile {:?}", r.profile.get_ref()),
                );
            }
            let upstream_key = match &r.upstream_key {
                Some(s) => Some(self.secret(&key("upstream_key"), s)?),
                None => None,
            };
            if upstream_key
                .as_ref()
                .is_some_and(|k| HeaderValue::from_str(&format!("Bearer {}", k.expose())).is_err())
            {
                return self.err(
                    r.upstream_key.as_ref().map(Spanned::span),
                    key("upstream_key"),
                    "the secret is not a valid HTTP header value",
                );
            }
            out.push(Route {
                name: r
                    .name
                    .clone()
                    .unwrap_or_else(|| prefix.trim_matches('/').to_owned()),
                prefix: prefix.clone(),
                upstream,
                profile: r.profile.get_ref().clone(),
                flavor: r.flavor,
                upstream_key,
                unknown_objects: r.unknown_objects,
                unknown_endpoints: r.unknown_endpoints,
            });
        }
        Ok(out)
    }

    fn tenants(
        &self,
        raw: &[RawTenant],
        routes: &[Route],
        profiles: &BTreeMap<String, Profile>,
    ) -> Result<Vec<Tenant>, ConfigError> {
        let mut out: Vec<Tenant> = Vec::with_capacity(raw.len());
        let mut seen_keys: HashMap<String, &str> = HashMap::new();
        for (i, t) in raw.iter().enumerate() {
            let key = |field: &str| format!("tenants[{i}].{field}");
            let id = t.id.get_ref();
            if id.is_empty() || out.iter().any(|o| &o.id.0 == id) {
                return self.err(
                    Some(t.id.span()),
                    key("id"),
                    format!("{id:?} is empty or used twice"),
                );
            }
            if let Some(p) = &t.profile {
                if !profiles.contains_key(p.get_ref()) {
                    return self.err(
                        Some(p.span()),
                        key("profile"),
                        format!("unknown profile {:?}", p.get_ref()),
                    );
                }
            }
            for (field, list, scheme) in [
                ("managed_keys", &t.managed_keys, "sha256:"),
                (
                    "passthrough_fingerprints",
                    &t.passthrough_fingerprints,
                    "hmac-sha256:",
                ),
            ] {
                for k in list {
                    let hex_part = k.get_ref().strip_prefix(scheme).unwrap_or("");
                    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return self.err(
                            Some(k.span()),
                            key(field),
                            format!("expected \"{scheme}<64 hex digits>\" (see `custodian keys`)"),
                        );
                    }
                    if let Some(other) = seen_keys.insert(k.get_ref().to_ascii_lowercase(), id) {
                        return self.err(
                            Some(k.span()),
                            key(field),
                            format!("also listed for tenant {other:?}"),
                        );
                    }
                }
            }
            let mut policies = Vec::with_capacity(routes.len());
            for route in routes {
                let profile_name = t.profile.as_ref().map_or(&route.profile, |p| p.get_ref());
                let Some(profile) = profiles.get(profile_name) else {
                    return self.err(Some(t.id.span()), key("profile"), "unknown profile");
                };
                let retention = Retention {
                    content: profile.content_retention,
                    metadata: profile.metadata_retention,
                }
                .narrowed(t.content_retention, t.metadata_retention);
                let retention = match retention {
                    Ok(r) => r,
                    Err(e @ RetentionError::LongerThanProfile { .. })
                    | Err(e @ RetentionError::ContentOutlivesMetadata { .. }) => {
                        return self.err(
                            Some(t.id.span()),
                            key("content_retention"),
                            format!(
                                "under profile {profile_name:?} (route {:?}): {e}",
                                route.name
                            ),
                        )
                    }
                };
                let receipt = |kept| {
                    HeaderValue::from_str(&retention.receipt_for(kept))
                        .unwrap_or(HeaderValue::from_static("unknown"))
                };
                use crate::policy::ContentKept;
                let retention_receipts = [
                    receipt(ContentKept::Kept),
                    receipt(ContentKept::ForSafetyReview),
                    receipt(ContentKept::NotKept),
                ];
                policies.push(Arc::new(EffectivePolicy {
                    profile: Arc::from(profile_name.as_str()),
                    retention,
                    zero_data_retention: profile.zero_data_retention || t.zero_data_retention,
                    safety_retention: profile.safety_retention,
                    classifier: profile.classifier,
                    unscannable: profile.unscannable,
                    upstream_objects: profile.upstream_objects,
                    training_cutover: profile.training_cutover,
                    retention_receipts,
                }));
            }
            out.push(Tenant {
                id: TenantId(id.clone()),
                profile: t.profile.as_ref().map(|p| p.get_ref().clone()),
                zero_data_retention: t.zero_data_retention,
                content_retention: t.content_retention,
                metadata_retention: t.metadata_retention,
                managed_key_hashes: t.managed_keys.iter().map(|k| k.get_ref().clone()).collect(),
                passthrough_fingerprints: t
                    .passthrough_fingerprints
                    .iter()
                    .map(|k| k.get_ref().clone())
                    .collect(),
                policies,
                upstream_keys: self.tenant_upstream_keys(t, routes)?,
            });
        }
        Ok(out)
    }

    /// A tenant's own upstream credentials, by route index; a route name
    /// that does not exist is refused.
    fn tenant_upstream_keys(
        &self,
        t: &RawTenant,
        routes: &[Route],
    ) -> Result<Vec<Option<Secret>>, ConfigError> {
        let mut keys = vec![None; routes.len()];
        for (route, secret) in &t.upstream_keys {
            let key = format!("tenants.{}.upstream_keys.{route}", t.id.get_ref());
            let Some(i) = routes.iter().position(|r| &r.name == route) else {
                return self.err(
                    Some(secret.span()),
                    key,
                    format!("no route is named {route:?}"),
                );
            };
            let value = self.secret(&key, secret)?;
            if HeaderValue::from_str(&format!("Bearer {}", value.expose())).is_err() {
                return self.err(
                    Some(secret.span()),
                    key,
                    "the secret is not a valid HTTP header value",
                );
            }
            keys[i] = Some(value);
        }
        Ok(keys)
    }

    fn auth(&self, raw: &RawAuth, tenants: &[Tenant]) -> Result<AuthConfig, ConfigError> {
        let default_tenant = match &raw.default_tenant {
            None => None,
            Some(name) => match tenants.iter().position(|t| &t.id.0 == name.get_ref()) {
                Some(i) => Some(i),
                None => {
                    return self.err(
                        Some(name.span()),
                        "auth.default_tenant",
                        format!("no tenant with id {:?}", name.get_ref()),
                    )
                }
            },
        };
        let fingerprint_key = match &raw.fingerprint_key {
            Some(s) => Some(self.secret("auth.fingerprint_key", s)?),
            None => None,
        };
        let uses_fingerprints = tenants
            .iter()
            .any(|t| !t.passthrough_fingerprints.is_empty());
        if uses_fingerprints && fingerprint_key.is_none() {
            return self.err(
                None,
                "auth.fingerprint_key",
                "tenants list passthrough_fingerprints, so a fingerprint key is required",
            );
        }
        Ok(AuthConfig {
            default_tenant,
            fingerprint_key,
        })
    }
}

/// A short, stable hash of everything that decides how a request is treated.
fn policy_version(
    profiles: &BTreeMap<String, Profile>,
    routes: &[Route],
    tenants: &[Tenant],
) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        profiles: &'a BTreeMap<String, Profile>,
        routes: Vec<(&'a str, &'a str)>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unknown_objects: Vec<(&'a str, UnknownObjects)>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unknown_endpoints: Vec<(&'a str, UnknownObjects)>,
        tenants: Vec<CanonicalTenant<'a>>,
    }
    #[derive(Serialize)]
    struct CanonicalTenant<'a> {
        id: &'a str,
        profile: Option<&'a str>,
        zero_data_retention: bool,
        content_retention: Option<u64>,
        metadata_retention: Option<u64>,
    }
    let canonical = Canonical {
        profiles,
        routes: routes
            .iter()
            .map(|r| (r.prefix.as_str(), r.profile.as_str()))
            .collect(),
        unknown_objects: routes
            .iter()
            .filter_map(|r| Some((r.prefix.as_str(), r.unknown_objects?)))
            .collect(),
        unknown_endpoints: routes
            .iter()
            .filter_map(|r| Some((r.prefix.as_str(), r.unknown_endpoints?)))
            .collect(),
        tenants: tenants
            .iter()
            .map(|t| CanonicalTenant {
                id: t.id.0.as_str(),
                profile: t.profile.as_deref(),
                zero_data_retention: t.zero_data_retention,
                content_retention: t.content_retention.map(|d| d.as_secs()),
                metadata_retention: t.metadata_retention.map(|d| d.as_secs()),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("pv_{}", &hex::encode(digest)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"

[[routes]]
prefix = "/v1/"
upstream = "http://127.0.0.1:1/v1"
profile = "api"

[[tenants]]
id = "acme"
managed_keys = ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("test.toml"), text, Vec::new())
    }

    #[test]
    fn encryption_keys_are_checked_where_they_are_given() {
        const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let load = |section: &str| {
            let env = vec![
                ("KEK".to_owned(), KEK.to_owned()),
                ("SHORT".to_owned(), "abcd".to_owned()),
            ];
            let text = format!("{MINIMAL}\n[encryption]\nenabled = true\n{section}\n");
            Config::from_toml(Path::new("test.toml"), &text, env)
        };
        let ok = load("kek = { env = \"KEK\" }\nprevious_keks = [{ env = \"KEK\" }]").unwrap();
        let encryption = ok.encryption.unwrap();
        assert_eq!(encryption.previous_keks.len(), 1);
        assert_eq!(encryption.refresh_interval, Duration::from_secs(30));
        for (section, key) in [
            ("kek = { env = \"SHORT\" }", "encryption.kek"),
            (
                "kek = { env = \"KEK\" }\nprevious_keks = [{ env = \"SHORT\" }]",
                "encryption.previous_keks",
            ),
            (
                "kek = { env = \"KEK\" }\nkey_store_url = \"mysql://x\"",
                "encryption.key_store_url",
            ),
            (
                "kek = { env = \"KEK\" }\nrefresh_interval = \"0s\"",
                "encryption.refresh_interval",
            ),
            ("key_dir = \"k\"", "encryption.kek"),
        ] {
            let err = load(section).unwrap_err().to_string();
            assert!(err.contains(key), "{section}: {err}");
            assert!(!err.contains("abcd"), "{err}");
        }
    }

    fn load_err(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("config should have been rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.database.url, "sqlite://custodian.db");
        assert_eq!(c.routes[0].upstream.as_str(), "http://127.0.0.1:1/v1/");
        let policy = &c.tenants[0].policies[0];
        assert_eq!(policy.retention.content, Duration::from_secs(30 * 86_400));
        assert_eq!(policy.retention.metadata, Duration::from_secs(365 * 86_400));
        assert!(c.policy_version.starts_with("pv_"));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = format!("{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n");
        let err = load_err(&text);
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 16"), "{err}");
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_line() {
        let text = MINIMAL.replace(
            "training_cutover = \"2023-03-01T00:00:00Z\"",
            "content_retention = \"thirty days\"",
        );
        let err = load_err(&text);
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn unknown_profile_reference_names_line_and_key() {
        let err = load_err(&MINIMAL.replace("profile = \"api\"", "profile = \"apx\""));
        assert!(err.starts_with("test.toml:8: routes[0].profile"), "{err}");
    }

    #[test]
    fn tenant_cannot_lengthen_retention() {
        let text = format!("{MINIMAL}content_retention = \"31d\"\n");
        let err = load_err(&text);
        assert!(err.contains("tenants[0].content_retention"), "{err}");
        assert!(err.contains("may only shorten"), "{err}");
    }

    #[test]
    fn malformed_key_hash_is_rejected() {
        let err = load_err(&MINIMAL.replace("sha256:0000", "sha256:zz00"));
        assert!(err.contains("tenants[0].managed_keys"), "{err}");
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let env = vec![
            (
                "CUSTODIAN__DATABASE__URL".to_owned(),
                "postgres://x/y".to_owned(),
            ),
            (
                "CUSTODIAN__DATABASE__MAX_CONNECTIONS".to_owned(),
                "3".to_owned(),
            ),
            (
                "CUSTODIAN__SERVER__SHUTDOWN_DRAIN".to_owned(),
                "5s".to_owned(),
            ),
            ("OTHER".to_owned(), "ignored".to_owned()),
        ];
        let c = Config::from_toml(Path::new("t.toml"), MINIMAL, env).unwrap();
        assert_eq!(c.database.url, "postgres://x/y");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.server.shutdown_drain, Duration::from_secs(5));
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let env = vec![("CUSTODIAN__SERVER__LISTEN".to_owned(), "nowhere".to_owned())];
        let err = Config::from_toml(Path::new("t.toml"), MINIMAL, env)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("CUSTODIAN__SERVER__LISTEN"), "{err}");
    }

    #[test]
    fn missing_secret_env_is_an_error_naming_the_key() {
        let text = MINIMAL.replace(
            "profile = \"api\"\n\n[[tenants]]",
            "profile = \"api\"\nupstream_key = { env = \"CUSTODIAN_TEST_SURELY_UNSET\" }\n\n[[tenants]]",
        );
        let err = load_err(&text);
        assert!(err.contains("routes[0].upstream_key"), "{err}");
        assert!(err.contains("CUSTODIAN_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("sk-live")), "Secret(*****)");
    }

    #[test]
    fn policy_version_changes_with_policy_only() {
        let a = load(MINIMAL).unwrap().policy_version;
        let b = load(&format!("{MINIMAL}\n[server]\nshutdown_drain = \"1s\"\n"))
            .unwrap()
            .policy_version;
        let c = load(&MINIMAL.replace("2023-03-01", "2024-03-01"))
            .unwrap()
            .policy_version;
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
