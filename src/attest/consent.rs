//! Claim 4: every training tag is the one the tenant's consent history
//! supports, decided again by the same pure function the proxy used.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{counted, evidence, AttestError, Claim, Sources};
use crate::domain::{ConsentEvent, TenantId, TrainingBasis, TrainingTag};
use crate::policy::training::{decide_training_use, TrainingInputs};
use crate::store::proof::{Check, Scope, TaggedRecord};

/// What the decision reads of a stored policy document.
#[derive(Debug, Default, Deserialize)]
struct Document {
    #[serde(default)]
    profiles: HashMap<String, DocProfile>,
    #[serde(default)]
    tenants: Vec<DocTenant>,
}

#[derive(Debug, Default, Deserialize)]
struct DocProfile {
    #[serde(default, with = "time::serde::rfc3339::option")]
    training_cutover: Option<OffsetDateTime>,
    #[serde(default)]
    zero_data_retention: bool,
}

#[derive(Debug, Deserialize)]
struct DocTenant {
    id: String,
    #[serde(default)]
    zero_data_retention: bool,
}

pub(super) async fn training_consent(
    sources: &Sources<'_>,
    scope: &Scope,
) -> Result<Claim, AttestError> {
    let exported = sources.store.check(Check::ExportedUnusable, scope).await?;
    let staleness = sources.config.consent.max_staleness;
    let mut documents: HashMap<String, Option<Document>> = HashMap::new();
    let mut histories: HashMap<TenantId, Vec<ConsentEvent>> = HashMap::new();
    let mut unsupported = 0usize;
    let mut records = sources.store.tagged_records(scope);
    while let Some(record) = records.try_next().await? {
        if !documents.contains_key(&record.policy_version) {
            let doc = sources
                .store
                .policy_document(&record.policy_version)
                .await?;
            let parsed = doc.and_then(|d| serde_json::from_str(&d).ok());
            documents.insert(record.policy_version.clone(), parsed);
        }
        if !histories.contains_key(&record.tenant) {
            let events = sources.store.consent_history(&record.tenant).await?;
            histories.insert(record.tenant.clone(), events);
        }
        let document = documents
            .get(&record.policy_version)
            .and_then(Option::as_ref);
        let history = histories.get(&record.tenant).map_or(&[][..], Vec::as_slice);
        if !supported(&record, document, history, staleness) {
            unsupported += 1;
        }
    }
    Ok(Claim::new(
        4,
        "training_consent",
        "Every exported training line came from a record tagged usable when received, \
         and every record's tag is what the tenant's consent history at that instant gives \
         (decide_training_use, under the policy version the record carries).",
        vec![
            evidence("exported records not tagged usable", exported),
            counted(
                "records whose tag the consent history does not support",
                unsupported,
            ),
        ],
    ))
}

/// Whether the record's tag is one the decision gives from the history as
/// the gateway could have known it: events recorded by the time the request
/// came, seen up to `staleness` late (the consent cache's bound). What no
/// record keeps (the per-request opt-out header, a cold consent cache) is
/// taken from the tag, and only ever as a denial.
fn supported(
    record: &TaggedRecord,
    document: Option<&Document>,
    history: &[ConsentEvent],
    staleness: std::time::Duration,
) -> bool {
    let TrainingTag { usable, basis } = record.tag;
    if !usable && basis == TrainingBasis::ConsentUnavailable {
        return true;
    }
    let (cutover, zero_data_retention) = match document {
        // A profile the policy does not name supports no tag that allows training.
        Some(doc) if !doc.profiles.contains_key(&record.profile) => return !usable,
        Some(doc) => {
            let profile = doc.profiles.get(&record.profile);
            let tenant_zdr = doc
                .tenants
                .iter()
                .any(|t| t.id == record.tenant.0 && t.zero_data_retention);
            (
                profile.and_then(|p| p.training_cutover),
                tenant_zdr || profile.is_some_and(|p| p.zero_data_retention),
            )
        }
        // Without the policy, nothing can support a tag that allows training.
        None => return !usable,
    };
    let received = record.received_at;
    let earliest = received - staleness;
    let mut views: Vec<OffsetDateTime> = vec![received, earliest];
    views.extend(
        history
            .iter()
            .filter(|e| e.recorded_at > earliest && e.recorded_at <= received)
            .map(|e| e.recorded_at - time::Duration::microseconds(1)),
    );
    views.into_iter().any(|known_at| {
        let known: Vec<ConsentEvent> = history
            .iter()
            .filter(|e| e.recorded_at <= known_at)
            .cloned()
            .collect();
        let decided = decide_training_use(TrainingInputs {
            zero_data_retention,
            request_opt_out: basis == TrainingBasis::RequestOptOut,
            consent_events: Some(&known),
            cutover,
            received_at: received,
        });
        decided == record.tag
    })
}
