//! Objects whose payload expired with the content retention (`upstream_objects = "expire"`): deleted upstream, audited.

use super::*;

/// Objects per purge pass.
pub(super) const PURGE_BATCH: i64 = 100;

/// Delete upstream the objects whose profile lets them expire with the
/// content retention, once it has passed: with the credential they were
/// made with (the tenant's own, or the route's), each deletion audited. An
/// object the upstream no longer has counts as deleted; one it refuses to
/// delete is retried on the next pass. Returns how many were deleted.
pub async fn purge_expired(state: &crate::proxy::ProxyState, now: OffsetDateTime) -> usize {
    let due = match state.store.objects_to_purge(now, PURGE_BATCH).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "expired upstream objects unknown: none purged");
            return 0;
        }
    };
    let mut purged = 0;
    for object in due {
        match purge_one(state, &object, now).await {
            Ok(()) => purged += 1,
            Err(why) => {
                metrics::counter!("custodian_object_purge_errors_total").increment(1);
                tracing::warn!(route = %object.route, kind = %object.kind, why, "an expired upstream object was not deleted; will retry");
            }
        }
    }
    if purged > 0 {
        metrics::counter!("custodian_objects_purged_total").increment(purged as u64);
        tracing::info!(objects = purged, "expired upstream objects deleted");
    }
    purged
}

pub(super) async fn purge_one(
    state: &crate::proxy::ProxyState,
    object: &UpstreamObject,
    now: OffsetDateTime,
) -> Result<(), &'static str> {
    let (index, route) = state
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| *r.name == *object.route)
        .ok_or("its route is no longer configured")?;
    let tenant_index = state
        .config
        .tenants
        .iter()
        .position(|t| t.id == object.tenant);
    let credential = tenant_index
        .and_then(|i| route.tenant_credential(i))
        .or(route.credential.as_ref())
        .ok_or("no upstream credential to delete it with")?;
    let mut headers = http::HeaderMap::new();
    match route.route.flavor {
        crate::config::Flavor::Openai => {
            headers.insert(http::header::AUTHORIZATION, credential.clone())
        }
        crate::config::Flavor::Anthropic => {
            headers.insert(
                "anthropic-version",
                http::HeaderValue::from_static("2023-06-01"),
            );
            headers.insert("x-api-key", credential.clone())
        }
    };
    let url = format!(
        "{}{}/{}",
        route.route.upstream, object.collection, object.object_id
    );
    let response = state
        .upstream
        .send(
            Method::DELETE,
            &url,
            headers,
            crate::proxy::upstream::UpstreamBody::Empty,
        )
        .await
        .map_err(|_| "the upstream could not be reached")?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) && status != 404 {
        return Err("the upstream refused the delete");
    }
    let keep_for = tenant_index
        .and_then(|i| state.config.tenants[i].policies.get(index))
        .and_then(|p| time::Duration::try_from(p.retention.metadata).ok())
        .unwrap_or(time::Duration::days(365));
    state
        .store
        .mark_object_deleted(&object.route, &object.object_id, now, keep_for)
        .await
        .map_err(|_| "the registry could not be updated")?;
    let audit = crate::domain::audit::AuditEvent {
        at: now,
        actor: "gateway:retention".into(),
        action: "upstream_object.purged".into(),
        tenant: Some(object.tenant.clone()),
        subject: None,
        source: "sweeper".into(),
        details: serde_json::json!({
            "route": object.route, "kind": object.kind, "object_id": object.object_id,
            "record": object.record_id.to_string(), "upstream_status": status,
        }),
    };
    state
        .store
        .append_audit(&audit)
        .await
        .map(drop)
        .map_err(|_| "the audit entry could not be written")
}
