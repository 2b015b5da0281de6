//! `custodian attest`: proof that the policy held, checked against the
//! live store, key store and spool. Each claim counts the rows that break
//! it and carries the statement an auditor can rerun (never content).
//! [`signature`] signs a report so that it can be handed on.

mod consent;
pub mod signature;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Config;
use crate::crypto::ContentKeys;
use crate::domain::audit::{ChainVerifier, GENESIS_HASH};
use crate::domain::TenantId;
use crate::store::proof::{Check, Finding, Scope, VersionUse};
use crate::store::{Store, StoreError};

/// Identifies the report's shape to whoever reads it later.
pub const FORMAT: &str = "custodian-attestation/1";

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("key store: {0}")]
    Keys(#[from] crate::crypto::CryptoError),
    #[error("spool: {0}")]
    Spool(#[from] crate::recording::spool::SpoolError),
}

/// What to attest: records received in `[since, until)`, one tenant or all.
#[derive(Debug, Clone)]
pub struct Period {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub tenant: Option<TenantId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Holds,
    Fails,
    /// The claim is about something this gateway does not do (encryption off).
    NotApplicable,
}

/// One count behind a claim, with the statement that makes it.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub what: &'static str,
    pub offending: i64,
    /// The statement (PostgreSQL or SQLite, as the store is), run with the
    /// report's `parameters`; absent where the gateway counts it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub id: u8,
    pub name: &'static str,
    pub statement: &'static str,
    pub verdict: Verdict,
    pub offending: i64,
    pub evidence: Vec<Evidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Claim {
    fn new(id: u8, name: &'static str, statement: &'static str, evidence: Vec<Evidence>) -> Self {
        let offending = evidence.iter().map(|e| e.offending).sum();
        Self {
            id,
            name,
            statement,
            verdict: if offending == 0 {
                Verdict::Holds
            } else {
                Verdict::Fails
            },
            offending,
            evidence,
            notes: Vec::new(),
        }
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The statements' parameters, as they were bound.
#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    /// `$1`/`?1`
    pub since: String,
    /// `$2`/`?2`
    pub until: String,
    /// `$3`/`?3`: state is judged one sweep interval before the report.
    pub cutoff: String,
    /// `$4`/`?4`: the empty string stands for every tenant.
    pub tenant: String,
    /// How SQLite holds instants (microseconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_micros: Option<[i64; 3]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HoldEntry {
    pub id: i64,
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
    pub ends_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyEntry {
    pub version: String,
    pub first_record: String,
    pub last_record: String,
    pub records: i64,
    /// The effective policy the version stands for, as stored.
    pub document: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub generated_at: String,
    pub store: &'static str,
    pub encryption: bool,
    pub holds: bool,
    pub parameters: Parameters,
    pub claims: Vec<Claim>,
    pub legal_holds: Vec<HoldEntry>,
    pub policy_versions: Vec<PolicyEntry>,
    /// Erasures on request in the period (from the audit log).
    pub erasures: Vec<ErasureEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErasureEntry {
    pub at: String,
    pub tenant: Option<String>,
    pub actor: String,
    /// What was removed and what holds kept, as audited.
    pub details: serde_json::Value,
}

impl Report {
    pub fn failing(&self) -> impl Iterator<Item = &Claim> {
        self.claims.iter().filter(|c| c.verdict == Verdict::Fails)
    }
}

/// What the claims read.
pub struct Sources<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    pub keys: Option<&'a ContentKeys>,
}

fn instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn evidence(what: &'static str, finding: Finding) -> Evidence {
    Evidence {
        what,
        offending: finding.offending,
        sql: Some(finding.sql),
    }
}

fn counted(what: &'static str, offending: usize) -> Evidence {
    Evidence {
        what,
        offending: i64::try_from(offending).unwrap_or(i64::MAX),
        sql: None,
    }
}

/// Check every claim for `period` at `now`.
pub async fn attest(
    sources: &Sources<'_>,
    period: &Period,
    now: OffsetDateTime,
) -> Result<Report, AttestError> {
    let interval = sources.config.sweeper.interval;
    // What the last successful sweep (as of its start) should have removed,
    // and never later than one interval ago: a sweep still running or
    // within claim 6's tolerance is not a retention failure.
    let last_sweep = sources
        .store
        .job_status(crate::jobs::sweeper::SWEEP_JOB)
        .await?
        .and_then(|s| s.last_ok_at);
    let scope = Scope {
        since: period.since,
        until: period.until.min(now),
        cutoff: last_sweep.map_or(now - interval, |at| at.min(now - interval)),
        tenant: period.tenant.clone(),
    };
    let (versions_claim, versions) = policy_versions(sources, &scope).await?;
    let claims = vec![
        retention(sources, &scope).await?,
        shredding(sources, &scope).await?,
        zero_retention(sources, &scope).await?,
        consent::training_consent(sources, &scope).await?,
        payload_reads(sources, &scope).await?,
        sweeper(sources, now, interval).await?,
        contractor_reads(sources, &scope).await?,
        versions_claim,
    ];
    let backend = sources.store.backend();
    Ok(Report {
        format: FORMAT,
        generated_at: instant(now),
        store: backend,
        encryption: sources.keys.is_some(),
        holds: claims.iter().all(|c| c.verdict != Verdict::Fails),
        parameters: Parameters {
            since: instant(scope.since),
            until: instant(scope.until),
            cutoff: instant(scope.cutoff),
            tenant: scope.tenant_param().to_owned(),
            sqlite_micros: (backend == "sqlite").then(|| {
                [
                    micros(scope.since),
                    micros(scope.until),
                    micros(scope.cutoff),
                ]
            }),
        },
        claims,
        legal_holds: holds(sources, &scope).await?,
        policy_versions: versions,
        erasures: erasures(sources, &scope).await?,
    })
}

async fn retention(sources: &Sources<'_>, scope: &Scope) -> Result<Claim, AttestError> {
    let found = sources.store.check(Check::ContentPastExpiry, scope).await?;
    Ok(Claim::new(
        1,
        "retention",
        "No content row or review item is kept past its expiry (beyond one sweep \
         interval), except under a legal hold; the holds are listed in legal_holds.",
        vec![evidence("content rows and review items past expiry", found)],
    ))
}

async fn shredding(sources: &Sources<'_>, scope: &Scope) -> Result<Claim, AttestError> {
    let clear = sources.store.check(Check::ContentInClear, scope).await?;
    let statement = "No content key outlives its day (with encryption on), and no content \
                     is stored in clear under a policy with encryption on.";
    let Some(keys) = sources.keys else {
        let mut claim = Claim::new(
            2,
            "shredding",
            statement,
            vec![evidence("content in clear under encryption", clear)],
        );
        if claim.verdict == Verdict::Holds {
            claim.verdict = Verdict::NotApplicable;
        }
        return Ok(claim.note("encryption is off: no content keys to check"));
    };
    let cutoff_day = crate::crypto::key_day(scope.cutoff);
    let day_start =
        OffsetDateTime::from_unix_timestamp(i64::from(cutoff_day) * 86_400).unwrap_or(scope.cutoff);
    let held: HashSet<i32> = sources
        .store
        .held_content_days(scope.cutoff, day_start)
        .await?
        .into_iter()
        .collect();
    let census = keys.census().await?;
    let stale = census
        .content_days
        .iter()
        .filter(|d| **d < cutoff_day && !held.contains(d))
        .count();
    Ok(Claim::new(
        2,
        "shredding",
        statement,
        vec![
            counted("content keys alive past their day", stale),
            evidence("content in clear under encryption", clear),
        ],
    ))
}

async fn zero_retention(sources: &Sources<'_>, scope: &Scope) -> Result<Claim, AttestError> {
    let stored = sources.store.check(Check::ZdrContent, scope).await?;
    let spool = &sources.config.spool;
    let spooled = crate::recording::spool::waiting_records(&spool.dir)?
        .iter()
        .filter(|r| r.meta.zero_data_retention && r.content.is_some() && r.review.is_none())
        .filter(|r| scope.tenant.as_ref().is_none_or(|t| *t == r.meta.tenant))
        .count();
    Ok(Claim::new(
        3,
        "zero_data_retention",
        "No content of a zero-data-retention request is kept in any table or in the \
         spool (metadata only), except content a flagged request keeps for review.",
        vec![
            evidence("content rows of zero-data-retention records", stored),
            counted("spooled zero-data-retention content", spooled),
        ],
    ))
}

async fn payload_reads(sources: &Sources<'_>, scope: &Scope) -> Result<Claim, AttestError> {
    let unaudited = sources.store.check(Check::ExportsUnaudited, scope).await?;
    let chain = verify_chain(sources.store).await?;
    let mut claim = Claim::new(
        5,
        "payload_reads_audited",
        "Every payload read has its audit entry (review reads write theirs in the read's \
         transaction; exports at their end), and the audit chain verifies from its first \
         entry to the head row.",
        vec![
            evidence("finished exports without an audit entry", unaudited),
            counted("audit chain breaks", usize::from(chain.is_err())),
        ],
    );
    match chain {
        Ok((entries, seq, _)) => {
            claim = claim.note(format!("chain intact: {entries} entries, head #{seq}"))
        }
        Err(why) => claim = claim.note(why),
    }
    Ok(claim)
}

/// The audit chain from its first entry to the head row: `(entries, head
/// seq, head hash)`, or why it does not verify (`custodian audit verify`
/// prints the same).
pub async fn verify_chain(
    store: &dyn Store,
) -> Result<Result<(u64, i64, String), String>, StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            if let Err(e) = verifier.check(entry) {
                return Ok(Err(e.to_string()));
            }
        }
    }
    let (head_seq, head_hash) = store.audit_head().await?;
    let (seq, hash) = verifier.head().unwrap_or((0, GENESIS_HASH));
    if (seq, hash) != (head_seq, head_hash.as_str()) {
        return Ok(Err(format!(
            "the audit log ends at entry {seq} but its head records entry {head_seq}: \
             entries are missing"
        )));
    }
    Ok(Ok((verifier.checked(), seq, hash.to_owned())))
}

async fn sweeper(
    sources: &Sources<'_>,
    now: OffsetDateTime,
    interval: Duration,
) -> Result<Claim, AttestError> {
    let status = sources
        .store
        .job_status(crate::jobs::sweeper::SWEEP_JOB)
        .await?;
    let last_ok = status.as_ref().and_then(|s| s.last_ok_at);
    let late = last_ok.is_none_or(|at| at < now - interval * 2);
    let registered: BTreeSet<&str> = crate::store::registry::TABLES
        .iter()
        .map(|t| t.table)
        .chain(crate::store::registry::INTERNAL_TABLES.iter().copied())
        .collect();
    let unregistered: Vec<String> = sources
        .store
        .table_names()
        .await?
        .into_iter()
        .filter(|t| !registered.contains(t.as_str()))
        .collect();
    let mut claim = Claim::new(
        6,
        "sweeper",
        "The retention sweeper ran successfully within two sweep intervals, and every \
         table is in the retention registry.",
        vec![
            counted("sweeper late or never run", usize::from(late)),
            counted("tables outside the retention registry", unregistered.len()),
        ],
    );
    claim = claim.note(match last_ok {
        Some(at) => format!("last successful sweep {}", instant(at)),
        None => "no successful sweep recorded".to_owned(),
    });
    if !sources.config.sweeper.enabled {
        claim = claim.note("sweeper.enabled is false in this configuration");
    }
    if !unregistered.is_empty() {
        claim = claim.note(format!("unregistered: {}", unregistered.join(", ")));
    }
    Ok(claim)
}

async fn contractor_reads(sources: &Sources<'_>, scope: &Scope) -> Result<Claim, AttestError> {
    let found = sources
        .store
        .check(Check::ContractorReadsUnassigned, scope)
        .await?;
    Ok(Claim::new(
        7,
        "contractor_reads",
        "Every contractor read was of an item assigned to that contractor at that moment \
         (per the audit log), before the contractor's expiry or revocation.",
        vec![evidence("contractor reads of items not theirs", found)],
    ))
}

async fn policy_versions(
    sources: &Sources<'_>,
    scope: &Scope,
) -> Result<(Claim, Vec<PolicyEntry>), AttestError> {
    let used = sources.store.policy_versions_used(scope).await?;
    let unresolved: Vec<&VersionUse> = used
        .iter()
        .filter(|u| {
            u.document
                .as_deref()
                .is_none_or(|d| crate::config::policy_version(d) != u.version)
        })
        .collect();
    let mut claim = Claim::new(
        8,
        "policy_versions",
        "Every policy version in force over the period resolves to its stored policy \
         document, whose hash is the version; the documents are in policy_versions.",
        vec![counted(
            "policy versions without a matching document",
            unresolved.len(),
        )],
    );
    for u in unresolved {
        claim = claim.note(format!(
            "{}: {}",
            u.version,
            if u.document.is_some() {
                "stored document does not hash to it"
            } else {
                "no stored document"
            }
        ));
    }
    let entries = used
        .into_iter()
        .map(|u| PolicyEntry {
            version: u.version,
            first_record: instant(u.first),
            last_record: instant(u.last),
            records: u.records,
            document: u.document.and_then(|d| serde_json::from_str(&d).ok()),
        })
        .collect();
    Ok((claim, entries))
}

/// The holds in force at some time in the period.
async fn holds(sources: &Sources<'_>, scope: &Scope) -> Result<Vec<HoldEntry>, AttestError> {
    let holds = sources.store.list_holds().await?;
    Ok(holds
        .into_iter()
        .filter(|h| scope.tenant.as_ref().is_none_or(|t| *t == h.tenant))
        .filter(|h| h.created_at < scope.until && h.released_at.unwrap_or(h.ends_at) > scope.since)
        .map(|h| HoldEntry {
            id: h.id,
            tenant: h.tenant.0,
            record: h.record.map(|r| r.to_string()),
            reason: h.reason,
            actor: h.created_by,
            created_at: instant(h.created_at),
            ends_at: instant(h.ends_at),
            released_at: h.released_at.map(instant),
        })
        .collect())
}

/// The audited erasures in the period.
async fn erasures(sources: &Sources<'_>, scope: &Scope) -> Result<Vec<ErasureEntry>, AttestError> {
    let mut out = Vec::new();
    let mut filter = crate::store::AuditFilter {
        action: Some("tenant.erased".into()),
        since: Some(scope.since),
        until: Some(scope.until),
        limit: 1_000,
        ..Default::default()
    };
    loop {
        let page = sources.store.query_audit(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.after = last.seq;
        out.extend(
            page.into_iter()
                .filter(|e| {
                    scope
                        .tenant
                        .as_ref()
                        .is_none_or(|t| e.tenant.as_ref() == Some(t))
                })
                .map(|e| ErasureEntry {
                    at: instant(e.at),
                    tenant: e.tenant.map(|t| t.0),
                    actor: e.actor,
                    details: serde_json::from_str(&e.details).unwrap_or_default(),
                }),
        );
    }
    Ok(out)
}
