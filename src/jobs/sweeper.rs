//! The retention sweeper: removes what has passed its `expires_at`, on a
//! timer inside `serve` and on demand (`custodian sweep`). The store does
//! the removing (partition drops, batched deletes, holds, one sweeper per
//! database); this module runs it, logs one line per sweep and keeps the
//! retention metrics an operator alerts on.

use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SweeperConfig;
use crate::crypto::ContentKeys;
use crate::domain::clock::Clock;
use crate::objects::copies::{FileCopies, Leftovers};
use crate::store::registry::{self, RetentionClass};
use crate::store::{Store, StoreError, SweepReport};

/// Sweep once at the clock's now. A dry run only counts.
pub async fn sweep_once(
    store: &dyn Store,
    clock: &dyn Clock,
    batch_size: usize,
    dry_run: bool,
) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let now = clock.now();
    let swept = store.sweep(now, dry_run, batch_size).await;
    if !dry_run && !matches!(&swept, Ok(r) if r.skipped_locked) {
        note_run(store, now, swept.is_ok()).await;
    }
    let report = swept?;
    if report.skipped_locked {
        tracing::debug!("another replica is sweeping");
        return Ok(report);
    }
    if !dry_run {
        record_sweep(&report, now);
        tracing::info!(
            rows = report.total_rows(),
            content = report.rows.get("record_content").copied().unwrap_or(0),
            metadata = report.rows.get("record_meta").copied().unwrap_or(0),
            partitions = report.partitions.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "retention sweep"
        );
    }
    record_stats(store, clock).await;
    Ok(report)
}

/// `custodian attest` proves the sweeper ran from this row (metrics live
/// and die with the process).
async fn note_run(store: &dyn Store, now: OffsetDateTime, ok: bool) {
    if let Err(e) = store.record_job_run(SWEEP_JOB, now, ok).await {
        tracing::warn!(error = %e, "the sweep's run could not be noted");
    }
}

/// The sweep's name in `job_status`.
pub const SWEEP_JOB: &str = "sweep";

fn class_of(table: &str) -> &'static str {
    registry::lookup(table).map_or("unknown", |t| t.class.as_str())
}

fn record_sweep(report: &SweepReport, now: time::OffsetDateTime) {
    for (table, rows) in &report.rows {
        metrics::counter!("custodian_sweep_rows_removed_total", "table" => *table, "class" => class_of(table))
            .increment(*rows);
    }
    metrics::counter!("custodian_sweep_partitions_dropped_total")
        .increment(report.partitions.len() as u64);
    for class in [RetentionClass::Content, RetentionClass::Metadata] {
        metrics::gauge!("custodian_sweep_last_success_timestamp_seconds", "class" => class.as_str())
            .set(now.unix_timestamp() as f64);
    }
}

/// Rows past expiry and the oldest live row, per class: what an alert
/// watches ("rows past expiry > 0 for longer than two sweep intervals").
async fn record_stats(store: &dyn Store, clock: &dyn Clock) {
    let now = clock.now();
    match store.retention_stats(now).await {
        Ok(stats) => {
            for s in stats {
                let class = class_of(s.table);
                metrics::gauge!("custodian_retention_rows_past_expiry", "class" => class)
                    .set(s.past_expiry as f64);
                let age = s
                    .oldest_live_received_at
                    .map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0));
                metrics::gauge!("custodian_retention_oldest_live_row_age_seconds", "class" => class)
                    .set(age);
            }
        }
        Err(e) => tracing::warn!(error = %e, "retention statistics unavailable"),
    }
}

/// Sweep every `config.interval` until `shutdown`.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SweeperConfig,
    keys: Option<Arc<ContentKeys>>,
    uploads: Option<(FileCopies, std::time::Duration)>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // Shutdown does not wait for a long sweep: the next one finishes it.
    let job = super::Job::every("sweep", config.interval);
    super::spawn(job, shutdown, move || {
        let (store, clock, keys, uploads) = (
            Arc::clone(&store),
            Arc::clone(&clock),
            keys.clone(),
            uploads.clone(),
        );
        async move {
            let swept = sweep_once(store.as_ref(), clock.as_ref(), config.batch_size, false).await;
            if swept.is_err() {
                metrics::counter!("custodian_sweep_errors_total").increment(1);
            }
            // Keys and leftovers go even when the sweep failed.
            if let Some(keys) = &keys {
                shred_expired_keys(store.as_ref(), keys, clock.now()).await;
            }
            if let Some((files, max_age)) = &uploads {
                remove_upload_leftovers(files, clock.now(), *max_age).await;
            }
            swept.map(|_| ())
        }
    })
}

/// Uploads a killed process could not clean up: their pending blobs and
/// unused file keys (every replica does its own pass; it is idempotent).
async fn remove_upload_leftovers(
    files: &FileCopies,
    now: OffsetDateTime,
    max_age: std::time::Duration,
) {
    match files.remove_leftovers(now, max_age).await {
        Ok(removed) if removed != Leftovers::default() => {
            metrics::counter!("custodian_upload_leftovers_removed_total", "kind" => "blob")
                .increment(removed.blobs as u64);
            metrics::counter!("custodian_upload_leftovers_removed_total", "kind" => "file_key")
                .increment(removed.keys as u64);
            tracing::info!(
                blobs = removed.blobs,
                keys = removed.keys,
                "upload leftovers removed"
            );
        }
        Ok(_) => {}
        Err(e) => {
            metrics::counter!("custodian_sweep_errors_total").increment(1);
            tracing::error!(error = %e, "removing upload leftovers failed");
        }
    }
}

/// Crypto-shredding: destroy the content keys of days that have ended, so
/// that every copy of their content (backups, replicas, WAL archives) is
/// unreadable. A day that still holds content a legal hold keeps keeps its
/// key (the sweep keeps those rows too); the other days go.
pub async fn shred_expired_keys(store: &dyn Store, keys: &Arc<ContentKeys>, now: OffsetDateTime) {
    let today =
        OffsetDateTime::from_unix_timestamp(i64::from(crate::crypto::key_day(now)) * 86_400)
            .unwrap_or(now);
    let held: std::collections::HashSet<i32> = match store.held_content_days(now, today).await {
        Ok(days) => days.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "held content unknown: no content key destroyed");
            return;
        }
    };
    match keys.destroy_expired(now, &held).await {
        Ok(days) if !days.is_empty() => {
            metrics::counter!("custodian_content_keys_destroyed_total")
                .increment(days.len() as u64);
            tracing::info!(keys = days.len(), "content keys of ended days destroyed");
        }
        Ok(_) => {}
        Err(e) => {
            metrics::counter!("custodian_sweep_errors_total").increment(1);
            tracing::error!(error = %e, "destroying content keys failed");
        }
    }
}
