//! Logs and metrics. Logs never carry payloads, keys or tokens: the data
//! path logs ids, routes, statuses and error kinds only.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Latency buckets from 100 µs to 60 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    15.0, 60.0,
];

/// Install the global log subscriber. `RUST_LOG` wins over the config's filter.
pub fn init_logging(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests start several gateways) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder (installed once; later calls share it).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// One label set: `(name, value)` pairs.
type Labels = &'static [(&'static str, &'static str)];

/// Every counter family, with the label sets known before anything
/// happens (unlabelled ones have one empty set). Registered at zero when
/// the gateway starts, so a scrape (and an alert on `rate()` or on the
/// absence of a series) sees every family from the first one on. Families
/// whose labels are only known when something happens (a route's status,
/// a table's gauges) appear with their first sample.
const COUNTERS: &[(&str, &[Labels])] = &[
    ("custodian_requests_shed_total", &[&[]]),
    ("custodian_requests_refused_unrecordable_total", &[&[]]),
    ("custodian_records_written_total", &[&[]]),
    ("custodian_record_write_errors_total", &[&[]]),
    ("custodian_record_queue_waits_total", &[&[]]),
    (
        "custodian_records_dropped_total",
        &[
            &[("reason", "shutting_down")],
            &[("reason", "queue_full")],
            &[("reason", "rejected_by_store")],
            &[("reason", "open_at_shutdown")],
            &[("reason", "store_unavailable_at_shutdown")],
            &[("reason", "spool_full")],
            &[("reason", "spool_failed")],
        ],
    ),
    ("custodian_spool_records_total", &[&[]]),
    (
        "custodian_spool_unreadable_total",
        &[&[("reason", "bad_tail")], &[("reason", "undecodable")]],
    ),
    (
        "custodian_spool_append_errors_total",
        &[&[("reason", "spool_full")], &[("reason", "spool_failed")]],
    ),
    (
        "custodian_journal_failures_total",
        &[&[("reason", "spool_full")], &[("reason", "spool_failed")]],
    ),
    ("custodian_journal_bypassed_total", &[&[]]),
    ("custodian_sweep_errors_total", &[&[]]),
    ("custodian_sweep_partitions_dropped_total", &[&[]]),
    ("custodian_consent_refresh_errors_total", &[&[]]),
    ("custodian_classifier_checks_total", &[&[]]),
    ("custodian_classifier_refused_total", &[&[]]),
    (
        "custodian_classifier_unchecked_total",
        &[
            &[("reason", "queue_full")],
            &[("reason", "tenant_share")],
            &[("reason", "gave_up")],
            &[("reason", "retrying")],
            &[("reason", "record_missing")],
            &[("reason", "store_error")],
        ],
    ),
    ("custodian_file_copies_kept_total", &[&[]]),
    (
        "custodian_upload_leftovers_removed_total",
        &[&[("kind", "blob")], &[("kind", "file_key")]],
    ),
    ("custodian_file_copies_failed_total", &[&[]]),
    ("custodian_content_seal_failures_total", &[&[]]),
    ("custodian_content_keys_destroyed_total", &[&[]]),
    ("custodian_key_upkeep_errors_total", &[&[]]),
    ("custodian_body_budget_waits_total", &[&[]]),
    (
        "custodian_object_refusals_total",
        &[&[("reason", "other_tenant")], &[("reason", "unknown")]],
    ),
    ("custodian_objects_registered_total", &[&[]]),
    ("custodian_objects_purged_total", &[&[]]),
    ("custodian_object_purge_errors_total", &[&[]]),
    ("custodian_object_registry_errors_total", &[&[]]),
    ("custodian_body_budget_refusals_total", &[&[]]),
    (
        "custodian_requests_unscanned_total",
        &[
            &[("reason", "scan_limit"), ("action", "flag")],
            &[("reason", "scan_limit"), ("action", "block")],
            &[("reason", "scan_limit"), ("action", "allow")],
            &[("reason", "unknown_encoding"), ("action", "flag")],
            &[("reason", "unknown_encoding"), ("action", "block")],
            &[("reason", "unknown_encoding"), ("action", "allow")],
            &[("reason", "binary"), ("action", "flag")],
            &[("reason", "binary"), ("action", "block")],
            &[("reason", "binary"), ("action", "allow")],
            &[("reason", "malformed_multipart"), ("action", "flag")],
            &[("reason", "malformed_multipart"), ("action", "block")],
            &[("reason", "malformed_multipart"), ("action", "allow")],
        ],
    ),
];

/// Families registered per periodic job.
const PER_JOB_COUNTERS: &[&str] = &["custodian_job_runs_total"];

/// Families registered per configured rule or swept table.
const PER_RULE_COUNTERS: &[&str] = &["custodian_rule_matches_total"];
const PER_TABLE_COUNTERS: &[&str] = &["custodian_sweep_rows_removed_total"];

/// Register every counter family at zero, and the gauges whose starting
/// value is known (the store is taken to be up until a write fails).
pub fn register_metrics(config: &crate::config::Config) {
    for (name, label_sets) in COUNTERS {
        for labels in *label_sets {
            let labels: Vec<metrics::Label> = labels
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, *v))
                .collect();
            metrics::counter!(*name, labels).increment(0);
        }
    }
    for name in PER_JOB_COUNTERS {
        for job in crate::jobs::NAMES {
            for outcome in ["ok", "error"] {
                metrics::counter!(*name, "job" => *job, "outcome" => outcome).increment(0);
            }
        }
    }
    for name in PER_RULE_COUNTERS {
        for (rule, action) in config.rules.names_and_actions() {
            metrics::counter!(*name, "rule" => rule.to_owned(), "action" => action.as_str())
                .increment(0);
        }
    }
    for name in PER_TABLE_COUNTERS {
        for table in crate::store::registry::TABLES {
            if table.expiry == crate::store::registry::Expiry::ExpiresAt {
                metrics::counter!(*name, "table" => table.table, "class" => table.class.as_str())
                    .increment(0);
            }
        }
    }
    metrics::gauge!("custodian_store_up").set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class of bug where a new counter is only visible after its
    /// first event: every counter the source names is registered here.
    #[test]
    fn every_counter_in_the_source_is_registered_at_start() {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let named = regex::Regex::new(r#"metrics::counter!\(\s*"(custodian_[a-z_]+)""#).unwrap();
        let registered: Vec<&str> = COUNTERS
            .iter()
            .map(|(n, _)| *n)
            .chain(PER_JOB_COUNTERS.iter().copied())
            .chain(PER_RULE_COUNTERS.iter().copied())
            .chain(PER_TABLE_COUNTERS.iter().copied())
            // Labelled by route and status: appears with the first request.
            .chain(["custodian_requests_total"])
            .collect();
        let mut stack = vec![source];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for name in named.captures_iter(&text) {
                    seen += 1;
                    assert!(
                        registered.contains(&&name[1]),
                        "{} ({}) is not registered in telemetry::COUNTERS",
                        &name[1],
                        path.display()
                    );
                }
            }
        }
        assert!(seen > 20, "the scan found the counters ({seen})");
    }
}
