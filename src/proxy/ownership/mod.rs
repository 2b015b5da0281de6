//! Tenants own their upstream objects (`crate::objects`), enforced on the
//! data path: a request naming another tenant's object (in its path or its
//! body) is answered 404, exactly as an object that does not exist, and is
//! never forwarded; an object the registry does not know is refused where
//! tenants share the upstream credential (configurable per route); what an
//! answer creates is registered to the caller before the answer is
//! released; an owner's delete is recorded; lists are cut to the caller's
//! objects (`list`). Zero-data-retention tenants get `"store": false`.

mod answers;
mod purge;

pub use answers::*;
pub use purge::*;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use time::OffsetDateTime;

use crate::config::UnknownObjects;
use crate::domain::objects::UpstreamObject;
use crate::domain::{RecordId, TenantId};
use crate::http::error::ApiError;
use crate::objects::{self, Kind, ObjectRef, Target};
use crate::proxy::auth::{Caller, KeyKind};
use crate::store::Store;

use super::RouteRuntime;

/// How long a registry lookup or write may take on the request path.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// What the registry has to do with one exchange.
pub struct Ownership {
    pub target: Target,
    /// A request body here can name objects (read before forwarding).
    pub reads_body: bool,
    /// The endpoint, as the gateway knows it.
    endpoint: objects::Endpoint,
    unknown_endpoints: UnknownObjects,
    /// The path has percent-escapes (which the upstream may decode into a
    /// path the gateway did not see).
    escaped: bool,
    /// The path addresses an object itself (what a DELETE removes).
    itself: bool,
    /// The body is an upload (multipart), not JSON.
    upload: bool,
    /// Tenants share the upstream credential here: the upstream cannot
    /// tell them apart, so the gateway must (lists are cut to the caller's
    /// objects, unknown ids refused unless the route says otherwise).
    pub shared: bool,
    unknown: UnknownObjects,
    route: Arc<str>,
    tenant: TenantId,
    method: Method,
    /// The request's body asked the upstream to keep what it creates
    /// (`store` on chat completions and responses).
    stores: bool,
    /// `v1/` when the client's paths carry it (collections are found
    /// under it), else nothing.
    base: &'static str,
    /// Objects holding payloads are deleted upstream this long after they
    /// are made (the profile's content retention), when it says so.
    purge_after: Option<time::Duration>,
    flavor: crate::config::Flavor,
}

impl Ownership {
    pub fn new(
        route: &RouteRuntime,
        caller: &Caller,
        tenant: &TenantId,
        (method, path): (&Method, &str),
        policy: &crate::config::EffectivePolicy,
    ) -> Self {
        let rest = path.get(route.route.prefix.len()..).unwrap_or("");
        let base = match rest.trim_start_matches('/').starts_with("v1/") {
            true => "v1/",
            false => "",
        };
        // Only what the gateway can delete (made with a credential it holds).
        let expires = policy.upstream_objects == crate::config::UpstreamObjects::Expire
            && caller.kind == KeyKind::Managed;
        let purge_after = expires
            .then(|| time::Duration::try_from(policy.retention.content).ok())
            .flatten();
        let shared = caller.kind == KeyKind::Managed
            && route.tenant_credential(caller.tenant_index).is_none();
        let unknown = route.route.unknown_objects.unwrap_or(match shared {
            true => UnknownObjects::Refuse,
            false => UnknownObjects::Forward,
        });
        let flavor = route.route.flavor;
        let target = objects::target(flavor, rest);
        let reads_body = objects::body_may_name_objects(flavor, rest);
        let unknown_endpoints = route.route.unknown_endpoints.unwrap_or(match shared {
            true => UnknownObjects::Refuse,
            false => UnknownObjects::Forward,
        });
        // A stored response is the endpoint's default; a stored chat
        // completion has to be asked for.
        let stores = matches!(target, Target::Collection(Kind::Response));
        Self {
            endpoint: objects::endpoint(flavor, rest),
            unknown_endpoints,
            escaped: rest.contains('%'),
            itself: objects::is_object_itself(flavor, rest),
            upload: method == Method::POST && objects::is_upload(flavor, rest),
            target,
            reads_body,
            shared,
            unknown,
            route: Arc::clone(&route.name),
            tenant: tenant.clone(),
            method: method.clone(),
            stores,
            base,
            purge_after,
            flavor: route.route.flavor,
        }
    }

    /// The objects the path names (checked before the body is read).
    pub fn path_refs(&self) -> &[ObjectRef] {
        match &self.target {
            Target::Objects(refs) => refs,
            _ => &[],
        }
    }

    /// Refuse (404) a request naming an object another tenant owns, or
    /// one the registry does not know where unknown ids are refused.
    pub async fn check(&self, store: &dyn Store, refs: &[ObjectRef]) -> Result<(), ApiError> {
        if self.shared && self.escaped {
            // `/v1/%66iles` is `/v1/files` once the upstream decodes it.
            return Err(ApiError::BadPath);
        }
        if self.endpoint == objects::Endpoint::Unknown
            && self.unknown_endpoints == UnknownObjects::Refuse
        {
            metrics::counter!("custodian_object_refusals_total", "reason" => "unknown_endpoint")
                .increment(1);
            return Err(ApiError::NotFound);
        }
        let mut ids: Vec<String> = refs.iter().map(|r| r.id.clone()).collect();
        ids.retain(|id| objects::valid_id(id));
        if ids.len() < refs.len() {
            // No upstream object has such an id; nor will it be forwarded.
            return Err(ApiError::NotFound);
        }
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        let known = tokio::time::timeout(STORE_WAIT, store.objects(&self.route, &ids))
            .await
            .map_err(|_| ApiError::StoreUnavailable)?
            .map_err(|e| {
                tracing::error!(error = %e, "the object registry could not be read");
                ApiError::StoreUnavailable
            })?;
        for id in &ids {
            match known.iter().find(|o| &o.object_id == id) {
                Some(o) if o.tenant != self.tenant => {
                    metrics::counter!("custodian_object_refusals_total", "reason" => "other_tenant")
                        .increment(1);
                    return Err(ApiError::NotFound);
                }
                Some(_) => {}
                None if self.unknown == UnknownObjects::Refuse => {
                    metrics::counter!("custodian_object_refusals_total", "reason" => "unknown")
                        .increment(1);
                    return Err(ApiError::NotFound);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// What a JSON request body means for the registry: the objects it
    /// names are checked, and whether the upstream is asked to store what
    /// it creates is noted. A body that is not JSON names nothing.
    pub async fn check_body(
        &mut self,
        store: &dyn Store,
        body: &[u8],
        zdr: bool,
    ) -> Result<(), ApiError> {
        let Some(refs) = objects::body_refs(body) else {
            // What a lenient upstream parser may still read as JSON (a BOM,
            // UTF-16, NaN, deep nesting) cannot be checked: refused where
            // it matters.
            return match self.shared || zdr {
                true => Err(ApiError::InvalidRequest(
                    "The request body is not JSON the gateway can read (it must check the objects it names).".into(),
                )),
                false => Ok(()),
            };
        };
        // Without a backslash no key is escaped: a body that never spells
        // `"store"` leaves it unset, and needs no parse.
        let spells_store =
            body.contains(&b'\\') || memchr::memmem::find(body, b"\"store\"").is_some();
        if spells_store
            && matches!(
                self.target,
                Target::Collection(Kind::ChatCompletion | Kind::Response)
            )
        {
            if let Ok(value) = serde_json::from_slice::<Value>(body) {
                self.stores = match objects::stateful_asks(&value).store {
                    Some(store) => store,
                    None => matches!(self.target, Target::Collection(Kind::Response)),
                };
            }
        }
        self.check(store, &refs).await
    }

    /// Whether the answer (2xx) may create or report objects to register:
    /// a create, or a read of a batch, upload or fine-tuning job (which
    /// reports the files it made).
    pub fn registers(&self, status: u16) -> bool {
        if !(200..300).contains(&status) {
            return false;
        }
        match &self.target {
            Target::Collection(Kind::ChatCompletion | Kind::Response) => {
                self.method == Method::POST && self.stores
            }
            Target::Collection(_) => self.method == Method::POST,
            Target::Objects(refs) => matches!(
                refs.first().map(|r| r.kind),
                Some(Kind::Batch | Kind::Upload | Kind::FineTuningJob)
            ),
            Target::Stateless => false,
        }
    }

    /// Register what `answer` (a JSON document, or the first events of a
    /// stream) created, to the caller, before the answer is released. A
    /// registry that cannot be written is logged and counted: the object
    /// is then unknown, refused rather than shared.
    pub async fn register(
        &self,
        store: &dyn Store,
        record: RecordId,
        answer: &[u8],
        streamed: bool,
        now: OffsetDateTime,
    ) {
        let mut rows: Vec<UpstreamObject> = Vec::new();
        let documents: Vec<&[u8]> = match streamed {
            true => crate::wire::sse_data(answer).collect(),
            false => vec![answer],
        };
        for document in documents {
            let Ok(value) = serde_json::from_slice::<Value>(document) else {
                continue;
            };
            for r in objects::created(&self.target, &value) {
                if rows.iter().any(|row| row.object_id == r.id) {
                    continue;
                }
                // A file's purpose is in the create's answer (a batch's
                // output files are batch output).
                let purpose = (value.get("id").and_then(Value::as_str) == Some(r.id.as_str()))
                    .then(|| value.get("purpose").and_then(Value::as_str))
                    .flatten();
                let purge_at = self
                    .purge_after
                    .filter(|_| r.kind.holds_payloads(purpose))
                    .map(|after| now + after);
                rows.push(UpstreamObject {
                    route: self.route.to_string(),
                    object_id: r.id,
                    kind: r.kind.as_str().to_owned(),
                    tenant: self.tenant.clone(),
                    record_id: record,
                    collection: format!("{}{}", self.base, r.kind.collection()),
                    created_at: now,
                    purge_at,
                    deleted_at: None,
                });
            }
        }
        if rows.is_empty() {
            return;
        }
        let written = tokio::time::timeout(STORE_WAIT, store.insert_objects(&rows)).await;
        match written {
            Ok(Ok(())) => {
                metrics::counter!("custodian_objects_registered_total")
                    .increment(rows.len() as u64);
            }
            Ok(Err(e)) => registration_failed(&e.to_string(), rows.len()),
            Err(_) => registration_failed("timed out", rows.len()),
        }
    }

    /// The object a 2xx answer to this request deleted.
    pub fn deleted(&self, status: u16) -> Option<&str> {
        let deletes = self.method == Method::DELETE && (200..300).contains(&status);
        // `DELETE /conversations/{c}/items/{i}` removes an item, and
        // `/vector_stores/{vs}/files/{file}` detaches a file: neither
        // deletes the object the path starts with.
        let first = self.path_refs().first();
        first
            .filter(|_| deletes && self.itself)
            .map(|r| r.id.as_str())
    }

    /// The owner's delete: the row expires `keep_for` later.
    pub async fn mark_deleted(
        &self,
        store: &dyn Store,
        id: &str,
        now: OffsetDateTime,
        keep_for: time::Duration,
    ) {
        let marked = tokio::time::timeout(
            STORE_WAIT,
            store.mark_object_deleted(&self.route, id, now, keep_for),
        )
        .await;
        if !matches!(marked, Ok(Ok(_))) {
            metrics::counter!("custodian_object_registry_errors_total").increment(1);
            tracing::error!(route = %self.route, "an object's deletion could not be recorded");
        }
    }

    /// A list this caller must get cut to its own objects.
    pub fn lists(&self) -> Option<Kind> {
        match self.target {
            Target::Collection(kind)
                if self.shared && self.method == Method::GET && kind.is_listed() =>
            {
                Some(kind)
            }
            _ => None,
        }
    }

    /// Whose objects a list page holds: the ids among `ids` this caller
    /// owns (and has not deleted).
    pub async fn owned_among(
        &self,
        store: &dyn Store,
        ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, ApiError> {
        let rows = tokio::time::timeout(STORE_WAIT, store.objects(&self.route, &ids))
            .await
            .map_err(|_| ApiError::StoreUnavailable)?
            .map_err(|_| ApiError::StoreUnavailable)?;
        Ok(rows
            .into_iter()
            .filter(|o| o.tenant == self.tenant && o.deleted_at.is_none())
            .map(|o| o.object_id)
            .collect())
    }

    /// For a zero-data-retention tenant: the upstream keeps nothing either.
    /// A chat completion or response is sent with `"store": false`; one
    /// that needs stored state is refused (400) with the reason. Returns
    /// the body to send when it had to change.
    pub fn zero_retention_body(&self, body: &[u8]) -> Result<Option<Bytes>, ApiError> {
        if self.method != Method::POST
            || !matches!(
                self.target,
                Target::Collection(Kind::ChatCompletion | Kind::Response)
            )
        {
            return Ok(None);
        }
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
            return Ok(None);
        };
        let asks = objects::stateful_asks(&Value::Object(map.clone()));
        let needs = [
            (asks.background, "background mode"),
            (asks.previous_response, "previous_response_id"),
            (asks.conversation, "a conversation"),
        ];
        if let Some((_, what)) = needs.iter().find(|(asked, _)| *asked) {
            return Err(ApiError::InvalidRequest(format!(
                "This tenant has zero data retention: the upstream keeps no state for it, so {what} cannot be used."
            )));
        }
        if asks.store == Some(false) {
            return Ok(None);
        }
        map.insert("store".into(), Value::Bool(false));
        let bytes = serde_json::to_vec(&Value::Object(map)).map_err(|_| ApiError::BadBody)?;
        Ok(Some(Bytes::from(bytes)))
    }
}
