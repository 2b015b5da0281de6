//! Tenants as the desk shows them, read-only: the consent history, the
//! training tag a request on each route would get now (decided by the same
//! pure function the proxy calls), legal holds and suspensions. No payload.

use crate::domain::review::{LegalHold, Suspension};
use crate::domain::{ConsentEvent, TenantId, TrainingTag};
use crate::policy::access::Action;
use crate::policy::{decide_training_use, TrainingInputs};

use super::desk::{Caller, Desk, DeskError};

pub struct TenantOverview {
    pub id: TenantId,
    pub zero_data_retention: bool,
    /// Oldest first, as recorded.
    pub consent: Vec<ConsentEvent>,
    /// Per configured route: its name, profile and the tag a request
    /// received now would get (without the per-request opt-out header).
    pub routes: Vec<RouteTag>,
    pub holds: Vec<LegalHold>,
    pub suspensions: Vec<Suspension>,
}

pub struct RouteTag {
    pub route: String,
    pub profile: String,
    pub tag: TrainingTag,
}

impl Desk {
    /// Every configured tenant.
    pub async fn tenants(&self, caller: &Caller) -> Result<Vec<TenantOverview>, DeskError> {
        self.gate(caller, Action::ReadTenants)?;
        let now = self.now();
        let holds = self.store.list_holds().await?;
        let suspensions = self.store.list_suspensions().await?;
        let mut out = Vec::new();
        for tenant in &self.config.tenants {
            let consent = self.store.consent_history(&tenant.id).await?;
            let routes = self
                .config
                .routes
                .iter()
                .zip(&tenant.policies)
                .map(|(route, policy)| RouteTag {
                    route: route.name.clone(),
                    profile: policy.profile.to_string(),
                    tag: decide_training_use(TrainingInputs {
                        zero_data_retention: policy.zero_data_retention,
                        request_opt_out: false,
                        consent_events: Some(&consent),
                        cutover: policy.training_cutover,
                        received_at: now,
                    }),
                })
                .collect();
            out.push(TenantOverview {
                id: tenant.id.clone(),
                zero_data_retention: tenant.zero_data_retention,
                routes,
                holds: holds
                    .iter()
                    .filter(|h| h.tenant == tenant.id)
                    .cloned()
                    .collect(),
                suspensions: suspensions
                    .iter()
                    .filter(|s| s.tenant == tenant.id)
                    .cloned()
                    .collect(),
                consent,
            });
        }
        Ok(out)
    }
}
