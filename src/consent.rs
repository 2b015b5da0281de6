//! The consent cache on the request path.
//!
//! Consent events are append-only, so each refresh reads only the events
//! recorded since the last one. A replica sees a change within
//! `consent.refresh_interval`; if it cannot refresh for longer than
//! `consent.max_staleness` (store unreachable) the cache reports consent as
//! unknown, and requests are tagged `consent_unavailable`, never usable by
//! accident.

use std::collections::HashMap;
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

#[derive(Default)]
struct Inner {
    by_tenant: HashMap<String, Vec<ConsentEvent>>,
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
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let after = self.inner.read().map(|i| i.last_seq).unwrap_or(0);
        let started = Instant::now();
        let events = store.consent_events_after(after).await?;
        let count = events.len();
        let Ok(mut inner) = self.inner.write() else {
            return Ok(0);
        };
        for stored in events {
            // A concurrent refresh may have applied these already.
            if stored.seq <= inner.last_seq {
                continue;
            }
            inner.last_seq = stored.seq;
            inner
                .by_tenant
                .entry(stored.event.tenant.0.clone())
                .or_default()
                .push(stored.event);
        }
        inner.refreshed_at = Some(started);
        Ok(count)
    }

    /// Refresh every `interval` until `shutdown`.
    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(e) = self.refresh(store.as_ref()).await {
                    metrics::counter!("custodian_consent_refresh_errors_total").increment(1);
                    tracing::warn!(error = %e, "consent refresh failed");
                }
            }
        })
    }
}
