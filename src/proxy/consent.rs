//! The consent cache on the request path.
//!
//! Consent events are append-only, so each refresh reads only the events
//! recorded since the last one. A replica sees a change within
//! `consent.refresh_interval`; if it cannot refresh for longer than
//! `consent.max_staleness` (store unreachable) the cache reports consent as
//! unknown, and requests are tagged `consent_unavailable`, never usable by
//! accident.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::{ConsentEvent, TenantId};
use crate::store::{Store, StoreError};

pub struct ConsentCache {
    inner: RwLock<Inner>,
    max_staleness: Duration,
}

/// How many sequence numbers below the highest seen are read again.
const REREAD_WINDOW: i64 = 1_000;

#[derive(Default)]
struct Inner {
    by_tenant: HashMap<String, Vec<ConsentEvent>>,
    seen: HashSet<i64>,
    last_seq: i64,
    refreshed_at: Option<Instant>,
}

impl ConsentCache {
    /// A cold cache: consent is unknown until the first refresh.
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_staleness,
        }
    }

    /// Run `f` with the tenant's events, or with `None` when consent cannot
    /// be known (cold, stale, or a poisoned lock).
    pub fn with_events<R>(
        &self,
        tenant: &TenantId,
        f: impl FnOnce(Option<&[ConsentEvent]>) -> R,
    ) -> R {
        let Ok(inner) = self.inner.read() else {
            return f(None);
        };
        let fresh = inner
            .refreshed_at
            .is_some_and(|at| at.elapsed() <= self.max_staleness);
        if !fresh {
            return f(None);
        }
        f(Some(
            inner.by_tenant.get(&tenant.0).map_or(&[], Vec::as_slice),
        ))
    }

    /// Read events recorded since the last refresh.
    ///
    /// Sequence numbers are assigned at insert but become visible at commit,
    /// so a lower number can appear after a higher one was read. Each refresh
    /// therefore re-reads a trailing window and skips the ids it has.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let after = self
            .inner
            .read()
            .map(|i| i.last_seq.saturating_sub(REREAD_WINDOW))
            .unwrap_or(0);
        let started = Instant::now();
        let events = store.consent_events_after(after).await?;
        let Ok(mut inner) = self.inner.write() else {
            return Ok(0);
        };
        let mut added = 0;
        for stored in events {
            if !inner.seen.insert(stored.seq) {
                continue;
            }
            added += 1;
            inner.last_seq = inner.last_seq.max(stored.seq);
            inner
                .by_tenant
                .entry(stored.event.tenant.0.clone())
                .or_default()
                .push(stored.event);
        }
        inner.refreshed_at = Some(started);
        Ok(added)
    }

    /// Refresh every `interval` until `shutdown`.
    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let job = crate::jobs::Job::every("consent_refresh", interval);
        crate::jobs::spawn(job, shutdown, move || {
            let (cache, store) = (Arc::clone(&self), Arc::clone(&store));
            async move {
                let refreshed = cache.refresh(store.as_ref()).await;
                if refreshed.is_err() {
                    metrics::counter!("custodian_consent_refresh_errors_total").increment(1);
                }
                refreshed.map(|_| ())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_cache_knows_no_consent() {
        let cache = ConsentCache::new(Duration::from_secs(10));
        let known = cache.with_events(&TenantId("acme".into()), |e| e.is_some());
        assert!(!known);
    }
}
