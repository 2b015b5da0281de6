//! The configuration file as serde reads it, before validation.

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEncryption {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) key_dir: Option<PathBuf>,
    pub(super) key_store_url: Option<String>,
    pub(super) kek: Option<Spanned<RawSecretRef>>,
    #[serde(default)]
    pub(super) previous_keks: Vec<Spanned<RawSecretRef>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub(super) refresh_interval: Option<Duration>,
}

// Raw form: exactly what the file says.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) upstream: RawUpstream,
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) capture: RawCapture,
    #[serde(default)]
    pub(super) writer: RawWriter,
    #[serde(default)]
    pub(super) spool: SpoolConfig,
    #[serde(default)]
    pub(super) consent: RawConsent,
    #[serde(default)]
    pub(super) sweeper: RawSweeper,
    #[serde(default)]
    pub(super) files: RawFiles,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    pub(super) review: ReviewConfig,
    pub(super) classifier: Option<RawClassifier>,
    #[serde(default)]
    pub(super) encryption: RawEncryption,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) attest: RawAttest,
    #[serde(default)]
    pub(super) console: RawConsole,
    #[serde(default)]
    pub(super) auth: RawAuth,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub(super) tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: SocketAddr,
    pub(super) admin_listen: SocketAddr,
    pub(super) max_request_body_bytes: usize,
    pub(super) max_scan_bytes: usize,
    pub(super) max_buffered_bytes: usize,
    pub(super) max_concurrent_requests: usize,
    #[serde(deserialize_with = "de_duration")]
    pub(super) header_read_timeout: Duration,
    pub(super) max_header_bytes: usize,
    pub(super) max_headers: usize,
    #[serde(deserialize_with = "de_duration")]
    pub(super) client_body_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) shutdown_drain: Duration,
    pub(super) trusted_proxies: Vec<Spanned<String>>,
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
pub(super) struct RawUpstream {
    #[serde(deserialize_with = "de_duration")]
    pub(super) connect_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) first_byte_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) idle_timeout: Duration,
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
pub(super) struct RawDatabase {
    pub(super) url: String,
    pub(super) migrate_on_start: bool,
    pub(super) max_connections: u32,
    #[serde(deserialize_with = "de_duration")]
    pub(super) connect_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) partitions_ahead: Duration,
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
pub(super) struct RawCapture {
    pub(super) max_body_bytes: usize,
    pub(super) compression_level: i32,
}

impl Default for RawCapture {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            compression_level: super::CaptureConfig::DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWriter {
    pub(super) queue_capacity: usize,
    pub(super) queue_max_bytes: usize,
    pub(super) batch_size: usize,
    #[serde(deserialize_with = "de_duration")]
    pub(super) flush_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) max_enqueue_wait: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) max_retry_backoff: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) store_timeout: Duration,
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
pub(super) struct RawConsent {
    #[serde(deserialize_with = "de_duration")]
    pub(super) refresh_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) max_staleness: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) severity: crate::domain::verdict::Severity,
    #[serde(default)]
    pub(super) action: crate::domain::verdict::RuleAction,
    #[serde(default)]
    pub(super) keywords: Vec<String>,
    #[serde(default)]
    pub(super) patterns: Vec<String>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_requests_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFiles {
    pub(super) location: String,
    #[serde(deserialize_with = "de_duration")]
    pub(super) pending_max_age: Duration,
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
pub(super) struct RawSweeper {
    pub(super) enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    pub(super) interval: Duration,
    pub(super) batch_size: usize,
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
pub(super) struct RawLogging {
    pub(super) format: LogFormat,
    pub(super) filter: String,
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
pub(super) struct RawAuth {
    pub(super) default_tenant: Option<Spanned<String>>,
    pub(super) fingerprint_key: Option<Spanned<RawSecretRef>>,
    pub(super) end_user_key: Option<Spanned<RawSecretRef>>,
}

/// `[attest]`: what signs `custodian attest --out` reports.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttest {
    pub(super) signing_key: Option<Spanned<RawSecretRef>>,
}

/// `[console]`: the reviewers' web console on the admin listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConsole {
    pub(super) enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    pub(super) idle_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(super) absolute_timeout: Duration,
    /// `None`: `Secure` unless the admin listener is on loopback.
    pub(super) secure_cookies: Option<bool>,
    pub(super) token_sign_in: bool,
    pub(super) oidc: Option<RawOidc>,
}

impl Default for RawConsole {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3_600),
            secure_cookies: None,
            token_sign_in: true,
            oidc: None,
        }
    }
}

/// `[console.oidc]`: single sign-on through the company's OpenID provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    pub(super) issuer: Spanned<String>,
    pub(super) client_id: String,
    pub(super) client_secret: Spanned<RawSecretRef>,
    pub(super) redirect_url: Spanned<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    pub(super) claim: Spanned<String>,
    #[serde(default)]
    pub(super) display_name: Option<String>,
    #[serde(default)]
    pub(super) principals: Vec<RawClaimMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimMapping {
    pub(super) value: Spanned<String>,
    pub(super) principal: Spanned<String>,
    pub(super) role: Spanned<String>,
}

/// A reference to a secret: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretRef {
    pub(super) env: Option<String>,
    pub(super) file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Option<String>,
    pub(super) prefix: Spanned<String>,
    pub(super) upstream: Spanned<String>,
    pub(super) profile: Spanned<String>,
    #[serde(default = "default_flavor")]
    pub(super) flavor: Flavor,
    pub(super) upstream_key: Option<Spanned<RawSecretRef>>,
    pub(super) unknown_objects: Option<UnknownObjects>,
    pub(super) unknown_endpoints: Option<UnknownObjects>,
}

pub(super) fn default_flavor() -> Flavor {
    Flavor::Openai
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    #[serde(
        default = "default_content_retention",
        deserialize_with = "de_duration"
    )]
    pub(super) content_retention: Duration,
    #[serde(
        default = "default_metadata_retention",
        deserialize_with = "de_duration"
    )]
    pub(super) metadata_retention: Duration,
    #[serde(default, deserialize_with = "de_opt_instant")]
    pub(super) training_cutover: Option<OffsetDateTime>,
    #[serde(default)]
    pub(super) zero_data_retention: bool,
    #[serde(default)]
    pub(super) safety_retention: bool,
    #[serde(default)]
    pub(super) classifier: ClassifierMode,
    #[serde(default)]
    pub(super) unscannable: crate::policy::rules::Unscannable,
    #[serde(default)]
    pub(super) upstream_objects: UpstreamObjects,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassifier {
    pub(super) url: Spanned<String>,
    pub(super) api_key: Option<Spanned<RawSecretRef>>,
    pub(super) model: Option<String>,
    #[serde(
        default = "default_classifier_timeout",
        deserialize_with = "de_duration"
    )]
    pub(super) timeout: Duration,
    #[serde(default = "default_classifier_concurrency")]
    pub(super) concurrency: usize,
    #[serde(default = "default_classifier_queue")]
    pub(super) queue_capacity: usize,
    #[serde(default = "default_classifier_tenant_share")]
    pub(super) tenant_share: f64,
    #[serde(default = "default_classifier_threshold")]
    pub(super) threshold: f64,
    #[serde(default)]
    pub(super) thresholds: BTreeMap<String, f64>,
    #[serde(default = "default_classifier_severity")]
    pub(super) severity: crate::domain::verdict::Severity,
}

pub(super) fn default_classifier_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_classifier_concurrency() -> usize {
    4
}
pub(super) fn default_classifier_queue() -> usize {
    1_000
}
pub(super) fn default_classifier_tenant_share() -> f64 {
    0.25
}
pub(super) fn default_classifier_threshold() -> f64 {
    0.5
}
pub(super) fn default_classifier_severity() -> crate::domain::verdict::Severity {
    crate::domain::verdict::Severity::High
}

pub(super) fn default_content_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

pub(super) fn default_metadata_retention() -> Duration {
    Duration::from_secs(365 * 86_400)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) id: Spanned<String>,
    pub(super) profile: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) zero_data_retention: bool,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub(super) content_retention: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub(super) metadata_retention: Option<Duration>,
    #[serde(default)]
    pub(super) managed_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) passthrough_fingerprints: Vec<Spanned<String>>,
    /// The tenant's own upstream credential, by route name.
    #[serde(default)]
    pub(super) upstream_keys: BTreeMap<String, Spanned<RawSecretRef>>,
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

pub(super) fn de_opt_instant<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    let s = String::deserialize(d)?;
    parse_instant(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub(super) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
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
