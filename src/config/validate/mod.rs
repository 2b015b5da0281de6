//! Validation: the raw file into [`Config`](super::Config), with errors
//! that name the file, line and key.

mod abuse;
mod console;
mod routes;
mod secrets;
mod tenants;

use super::*;

// Validation: raw → Config, with errors that name file, line and key.

pub(super) struct Validator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) env: &'a HashMap<String, String>,
}

impl Validator<'_> {
    pub(super) fn err<T>(
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

    pub(super) fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let profiles = self.profiles(&raw.profiles)?;
        let routes = self.routes(&raw.routes, &profiles)?;
        let tenants = self.tenants(&raw.tenants, &routes, &profiles)?;
        let auth = self.auth(&raw.auth, &tenants)?;
        let rules = self.rules(&raw.rules)?;
        let classifier = self.classifier(raw.classifier.as_ref(), &profiles)?;
        let encryption = self.encryption(&raw.encryption)?;
        let attest = self.attest(&raw.attest)?;
        let console = self.console(&raw.console, raw.server.admin_listen)?;
        self.positive(&raw)?;
        self.capture(&raw)?;
        let trusted_proxies = self.trusted_proxies(&raw.server.trusted_proxies)?;
        let policy_document = policy_document(&Policy {
            profiles: &profiles,
            routes: &routes,
            tenants: &tenants,
            rules: rules.specs(),
            encryption: encryption.is_some(),
        });
        let policy_version = policy_version(&policy_document);
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
                compression_level: raw.capture.compression_level,
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
            attest,
            console,
            routes,
            profiles,
            tenants,
            policy_version,
            policy_document,
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

    /// The capture cap within what the codec reads back; a known level.
    fn capture(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let readable = crate::domain::codec::MAX_DECODED_BYTES;
        if raw.capture.max_body_bytes as u64 > readable {
            // A longer compressed body could never be read back.
            let message = format!("must be at most {readable}");
            return self.err(None, "capture.max_body_bytes", message);
        }
        const MIN_LEVEL: i32 = CaptureConfig::MIN_COMPRESSION_LEVEL;
        const MAX_LEVEL: i32 = CaptureConfig::MAX_COMPRESSION_LEVEL;
        if !(MIN_LEVEL..=MAX_LEVEL).contains(&raw.capture.compression_level) {
            return self.err(
                None,
                "capture.compression_level",
                format!("must be {MIN_LEVEL} to {MAX_LEVEL} (0: store as captured)"),
            );
        }
        Ok(())
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
            ("spool.replay_interval", raw.spool.replay_interval),
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
}

/// Everything that decides how a request is treated.
pub(super) struct Policy<'a> {
    pub(super) profiles: &'a BTreeMap<String, Profile>,
    pub(super) routes: &'a [Route],
    pub(super) tenants: &'a [Tenant],
    pub(super) rules: &'a [crate::policy::rules::RuleSpec],
    pub(super) encryption: bool,
}

/// The effective policy as canonical JSON (keys in a fixed order): what a
/// policy version stands for, stored once per version so that the hash on
/// a record resolves to the policy itself.
pub(super) fn policy_document(policy: &Policy<'_>) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        profiles: &'a BTreeMap<String, Profile>,
        routes: Vec<(&'a str, &'a str)>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unknown_objects: Vec<(&'a str, UnknownObjects)>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unknown_endpoints: Vec<(&'a str, UnknownObjects)>,
        tenants: Vec<CanonicalTenant<'a>>,
        rules: &'a [crate::policy::rules::RuleSpec],
        encryption: bool,
    }
    #[derive(Serialize)]
    struct CanonicalTenant<'a> {
        id: &'a str,
        profile: Option<&'a str>,
        zero_data_retention: bool,
        content_retention: Option<u64>,
        metadata_retention: Option<u64>,
    }
    let routes = policy.routes;
    let canonical = Canonical {
        profiles: policy.profiles,
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
        tenants: policy
            .tenants
            .iter()
            .map(|t| CanonicalTenant {
                id: t.id.0.as_str(),
                profile: t.profile.as_deref(),
                zero_data_retention: t.zero_data_retention,
                content_retention: t.content_retention.map(|d| d.as_secs()),
                metadata_retention: t.metadata_retention.map(|d| d.as_secs()),
            })
            .collect(),
        rules: policy.rules,
        encryption: policy.encryption,
    };
    serde_json::to_string(&canonical).unwrap_or_default()
}

/// A short, stable hash of the policy document.
pub fn policy_version(document: &str) -> String {
    let digest = Sha256::digest(document.as_bytes());
    format!("pv_{}", &hex::encode(digest)[..16])
}
