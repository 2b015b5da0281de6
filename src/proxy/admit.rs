//! Admission: which route, whether there is room, who is calling, whether
//! they may call now, and under which policy. Every refusal here happens
//! before any work is done for the request.

use std::sync::Arc;

use http::header::HeaderValue;
use http::request::Parts;
use tokio::sync::OwnedSemaphorePermit;

use super::{reject, select_route, ProxyState};
use crate::abuse::classifier::Reservation;
use crate::config::{ClassifierMode, EffectivePolicy, Flavor};
use crate::http::error::ApiError;
use crate::proxy::auth::{AuthError, Caller};

/// A request let in: its route, its place, its caller and their policy.
pub(super) struct Admitted {
    pub(super) route_index: usize,
    pub(super) slot: OwnedSemaphorePermit,
    pub(super) caller: Caller,
    pub(super) policy: Arc<EffectivePolicy>,
    /// The classifier's place for this request, when it will read it.
    pub(super) classifier: Option<Reservation>,
}

/// Let the request in, or the response that refuses it.
pub(super) fn admit(
    state: &ProxyState,
    parts: &Parts,
    request_id: &HeaderValue,
) -> Result<Admitted, Box<axum::response::Response>> {
    let route_index = select_route(&state.routes, parts.uri.path())
        .map_err(|e| Box::new(reject(e, Flavor::Openai, request_id, "none")))?;
    let route = &state.routes[route_index];
    let refuse = |e: ApiError| Box::new(reject(e, route.route.flavor, request_id, &route.name));
    // Shed load early and cheaply: no place, no work.
    let Ok(slot) = Arc::clone(&state.slots).try_acquire_owned() else {
        metrics::counter!("custodian_requests_shed_total").increment(1);
        return Err(refuse(ApiError::Overloaded));
    };
    let caller = match state.api_keys.identify(route.route.flavor, &parts.headers) {
        Ok(c) => c,
        Err(AuthError::MissingKey) => return Err(refuse(ApiError::MissingKey)),
        Err(AuthError::UnknownKey) => return Err(refuse(ApiError::UnknownKey)),
    };
    let tenant = &state.config.tenants[caller.tenant_index];
    if state
        .suspensions
        .is_suspended(&tenant.id.0, &caller.key_id.0)
    {
        return Err(refuse(ApiError::Suspended));
    }
    if !state.sink.admits_requests() {
        // fail_closed: no call goes through without a place for its record.
        metrics::counter!("custodian_requests_refused_unrecordable_total").increment(1);
        return Err(refuse(ApiError::StoreUnavailable));
    }
    let policy = Arc::clone(&tenant.policies[route_index]);
    let classifier = match (policy.classifier, &state.classifier) {
        (ClassifierMode::Off, _) | (_, None) => None,
        (mode, Some(c)) if mode == ClassifierMode::FailOpen || c.healthy() => c.reserve(&tenant.id),
        _ => None,
    };
    if policy.classifier == ClassifierMode::FailClosed && classifier.is_none() {
        metrics::counter!("custodian_classifier_refused_total").increment(1);
        return Err(refuse(ApiError::ChecksUnavailable));
    }
    Ok(Admitted {
        route_index,
        slot,
        caller,
        policy,
        classifier,
    })
}
