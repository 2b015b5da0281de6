//! Keys and tenants suspended after confirmed abuse, as the request path
//! sees them: an in-memory set every replica reloads on the consent
//! refresh interval (and the replica that changes it, at once).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

#[derive(Debug, Default)]
pub struct Suspensions {
    /// `(tenant, None)` suspends the tenant; `(tenant, Some(key))` one key.
    active: RwLock<HashSet<(String, Option<String>)>>,
}

impl Suspensions {
    pub fn is_suspended(&self, tenant: &str, key_id: &str) -> bool {
        let Ok(active) = self.active.read() else {
            return false;
        };
        if active.is_empty() {
            return false;
        }
        active.contains(&(tenant.to_owned(), None))
            || active.contains(&(tenant.to_owned(), Some(key_id.to_owned())))
    }

    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let active: HashSet<(String, Option<String>)> = store
            .list_suspensions()
            .await?
            .into_iter()
            .filter(|s| s.lifted_at.is_none())
            .map(|s| (s.tenant.0, s.key_id))
            .collect();
        if let Ok(mut current) = self.active.write() {
            *current = active;
        }
        Ok(())
    }

    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let job = crate::jobs::Job::every("suspensions_refresh", interval);
        crate::jobs::spawn(job, shutdown, move || {
            let (set, store) = (Arc::clone(&self), Arc::clone(&store));
            async move { set.refresh(store.as_ref()).await }
        })
    }
}
