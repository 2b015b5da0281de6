//! Upkeep ahead of need: the partitions records may be written to before
//! the next run, and the content keys of the coming days.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Job;
use crate::config::Config;
use crate::crypto::ContentKeys;
use crate::domain::clock::Clock;
use crate::store::{self, Store};

/// How often partitions are checked ahead of need.
const PARTITION_UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Create partitions for everything that may be written before the next upkeep.
pub async fn prepare_partitions(
    config: &Config,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<(), store::StoreError> {
    let now = clock.now();
    let max = config.max_retention();
    let ahead = config.database.partitions_ahead;
    store
        .prepare_partitions(now, now + max.content + ahead, now + max.metadata + ahead)
        .await
}

/// Partitions, every hour (start-up has just made them).
pub fn spawn_partition_upkeep(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let job = Job::every("partition_upkeep", PARTITION_UPKEEP_INTERVAL).after_first_interval();
    super::spawn(job, shutdown, move || {
        let (config, store, clock) = (Arc::clone(&config), Arc::clone(&store), Arc::clone(&clock));
        async move { prepare_partitions(&config, store.as_ref(), clock.as_ref()).await }
    })
}

/// Reload the key store (what other replicas made or destroyed) and make
/// the coming days' keys, every `encryption.refresh_interval`.
pub fn spawn_key_upkeep(
    config: Arc<Config>,
    keys: Arc<ContentKeys>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let every = config
        .encryption
        .as_ref()
        .map_or(Duration::from_secs(30), |e| e.refresh_interval);
    let job = Job::every("key_upkeep", every).after_first_interval();
    super::spawn(job, shutdown, move || {
        let (config, keys, clock) = (Arc::clone(&config), Arc::clone(&keys), Arc::clone(&clock));
        async move {
            // Making keys goes on even when the refresh reports a key it
            // cannot open: one bad key must not stop the coming days'.
            let refreshed = keys.refresh().await;
            let prepared = prepare_content_keys(&config, &keys, clock.as_ref()).await;
            let errors: Vec<String> = [refreshed.err(), prepared.err()]
                .into_iter()
                .flatten()
                .map(|e| e.to_string())
                .collect();
            if errors.is_empty() {
                return Ok(());
            }
            metrics::counter!("custodian_key_upkeep_errors_total").increment(errors.len() as u64);
            Err(errors.join("; "))
        }
    })
}

/// Days of content keys made beyond the longest content retention, so that
/// sealing keeps working through a key-store outage this long.
const KEY_DAYS_AHEAD: i64 = 7;

/// Make the keys of every day content sealed before the next upkeep may
/// expire on, with a margin.
pub async fn prepare_content_keys(
    config: &Config,
    keys: &ContentKeys,
    clock: &dyn Clock,
) -> Result<(), crate::crypto::CryptoError> {
    let now = clock.now();
    let until = now + config.max_retention().content + time::Duration::days(KEY_DAYS_AHEAD);
    keys.prepare(now, until).await?;
    let tenants: Vec<_> = config.tenants.iter().map(|t| t.id.clone()).collect();
    keys.prepare_tenants(&tenants).await?;
    metrics::gauge!("custodian_content_key_days_ready").set(keys.days_ready(now) as f64);
    Ok(())
}
