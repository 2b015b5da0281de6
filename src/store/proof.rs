//! What `custodian attest` reads: the checks behind each claim (each a
//! statement an auditor can rerun), the policy documents behind each
//! policy version, and when the jobs the proof depends on last ran.

use super::*;

/// A check whose statement counts the rows that break a claim. Every
/// statement takes the same four parameters, named in its first line
/// (`WITH p(since, until, cutoff, tenant)`): see [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Content rows and review items past their expiry before the cutoff
    /// that no legal hold in force at the cutoff keeps (a hold placed later
    /// does not excuse what the sweeper should already have removed).
    ContentPastExpiry,
    /// Content rows received in the period in clear, written under a
    /// policy version with encryption on.
    ContentInClear,
    /// Content rows of records tagged zero-data-retention with no review
    /// item that keeps them (safety retention).
    ZdrContent,
    /// Export marks of records not tagged usable (or with no record).
    ExportedUnusable,
    /// Exports finished in the period with no `training.exported` audit entry.
    ExportsUnaudited,
    /// Review reads by contractors in the period of an item the audit log
    /// does not show assigned to them at that moment, or after their
    /// principal's expiry or revocation.
    ContractorReadsUnassigned,
}

/// What the checks look at: records received in `[since, until)`, state
/// judged at `cutoff` (one sweep interval before the report), one tenant
/// or (`None`) all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub cutoff: OffsetDateTime,
    pub tenant: Option<TenantId>,
}

impl Scope {
    /// The tenant parameter: the empty string stands for every tenant.
    pub fn tenant_param(&self) -> &str {
        self.tenant.as_ref().map_or("", |t| t.0.as_str())
    }
}

/// What a check found: the statement (run with the scope's parameters)
/// and the rows it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub sql: &'static str,
    pub offending: i64,
}

/// The last runs of a periodic job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub last_ok_at: Option<OffsetDateTime>,
    pub last_failed_at: Option<OffsetDateTime>,
    pub runs: i64,
}

/// A policy version as records carry it over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionUse {
    pub version: String,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    pub records: i64,
    /// The stored policy document, when it was stored.
    pub document: Option<String>,
}

/// A record's training tag with what it was decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedRecord {
    pub id: RecordId,
    pub tenant: TenantId,
    pub received_at: OffsetDateTime,
    pub tag: TrainingTag,
    pub profile: String,
    pub policy_version: String,
    pub zero_data_retention: bool,
}

impl From<RecordMeta> for TaggedRecord {
    fn from(m: RecordMeta) -> Self {
        Self {
            id: m.id,
            tenant: m.tenant,
            received_at: m.received_at,
            tag: m.training,
            profile: m.profile,
            policy_version: m.policy_version,
            zero_data_retention: m.zero_data_retention,
        }
    }
}

#[async_trait]
pub trait ProofStore: Send + Sync {
    /// Count what breaks `check` in `scope`.
    async fn check(&self, check: Check, scope: &Scope) -> Result<Finding, StoreError>;

    /// The records in `scope` with their tags, oldest first.
    fn tagged_records(&self, scope: &Scope) -> BoxStream<'_, Result<TaggedRecord, StoreError>>;

    /// The policy versions the records in `scope` carry (and, for every
    /// tenant, the versions first seen in its period), with their documents.
    async fn policy_versions_used(&self, scope: &Scope) -> Result<Vec<VersionUse>, StoreError>;

    /// Store `document` for `version` unless it is stored already.
    async fn save_policy_document(
        &self,
        version: &str,
        document: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    async fn policy_document(&self, version: &str) -> Result<Option<String>, StoreError>;

    /// Note one run of `job` at `at`.
    async fn record_job_run(
        &self,
        job: &str,
        at: OffsetDateTime,
        ok: bool,
    ) -> Result<(), StoreError>;

    async fn job_status(&self, job: &str) -> Result<Option<JobStatus>, StoreError>;
}

/// One entry per version: the records' span where there are records, the
/// document's first sighting otherwise; oldest first.
pub(super) fn merge_uses(uses: Vec<VersionUse>) -> Vec<VersionUse> {
    let mut merged: Vec<VersionUse> = Vec::with_capacity(uses.len());
    for u in uses {
        match merged.iter_mut().find(|m| m.version == u.version) {
            Some(m) if m.records == 0 => *m = u,
            Some(m) if u.records > 0 => m.records += u.records,
            Some(_) => {}
            None => merged.push(u),
        }
    }
    merged.sort_by(|a, b| (a.first, &a.version).cmp(&(b.first, &b.version)));
    merged
}

/// The parts of the checks' statements both backends spell alike; each
/// backend adds its header (`WITH p(since, until, cutoff, tenant) AS …`).
macro_rules! shared_sql {
    (held_at_cutoff) => {
        "EXISTS (SELECT 1 FROM legal_holds h WHERE h.tenant_id = c.tenant_id \
         AND (h.record_id IS NULL OR h.record_id = c.record_id) \
         AND h.created_at <= p.cutoff AND h.ends_at > p.cutoff \
         AND (h.released_at IS NULL OR h.released_at > p.cutoff))"
    };
    (tenant c) => {
        "(p.tenant = '' OR c.tenant_id = p.tenant)"
    };
    (content_past_expiry) => {
        concat!(
            "SELECT (SELECT count(*) FROM p CROSS JOIN record_content c \
             WHERE c.expires_at < p.cutoff AND ",
            shared_sql!(tenant c),
            " AND NOT ",
            shared_sql!(held_at_cutoff),
            ") + (SELECT count(*) FROM p CROSS JOIN review_items c \
             WHERE c.expires_at < p.cutoff AND ",
            shared_sql!(tenant c),
            " AND NOT ",
            shared_sql!(held_at_cutoff),
            ")"
        )
    };
    (zdr_content) => {
        concat!(
            "SELECT count(*) FROM p CROSS JOIN record_content c \
             JOIN record_meta m ON m.id = c.record_id \
             WHERE m.zero_data_retention AND ",
            shared_sql!(tenant c),
            " AND NOT EXISTS (SELECT 1 FROM review_items r \
             WHERE r.record_id = c.record_id AND r.content_kept)"
        )
    };
    (exported_unusable) => {
        "SELECT count(*) FROM p CROSS JOIN training_exports e \
         WHERE NOT EXISTS (SELECT 1 FROM record_meta m WHERE m.id = e.record_id AND m.training_usable) \
         AND (p.tenant = '' OR EXISTS (SELECT 1 FROM record_meta m \
         WHERE m.id = e.record_id AND m.tenant_id = p.tenant))"
    };
    (content_in_clear $encrypted:literal) => {
        concat!(
            "SELECT count(*) FROM p CROSS JOIN record_content c \
             JOIN record_meta m ON m.id = c.record_id \
             JOIN policy_documents d ON d.policy_version = m.policy_version \
             WHERE NOT c.sealed AND ",
            $encrypted,
            " AND c.received_at >= p.since AND c.received_at < p.until AND ",
            shared_sql!(tenant c)
        )
    };
    (exports_unaudited $export_text:literal) => {
        concat!(
            "SELECT count(*) FROM p CROSS JOIN training_export_runs r \
             WHERE r.finished_at >= p.since AND r.finished_at < p.until \
             AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.action = 'training.exported' \
             AND a.subject = 'export:' || ",
            $export_text,
            ")"
        )
    };
    (contractor_reads_unassigned $assignee:literal) => {
        concat!(
            "SELECT count(*) FROM p CROSS JOIN audit_log r \
             JOIN principals who ON r.actor = 'principal:' || who.name \
             WHERE who.role = 'contractor' AND r.action = 'review_item.read' \
             AND r.at >= p.since AND r.at < p.until AND (p.tenant = '' OR r.tenant_id = p.tenant) \
             AND ((who.expires_at IS NOT NULL AND r.at >= who.expires_at) \
             OR (who.revoked_at IS NOT NULL AND r.at >= who.revoked_at) \
             OR coalesce((SELECT CASE a.action WHEN 'review_item.claimed' THEN a.actor \
             ELSE 'principal:' || ",
            $assignee,
            " END FROM audit_log a WHERE a.subject = r.subject AND a.seq < r.seq \
             AND a.action IN ('review_item.claimed', 'review_item.assigned') \
             ORDER BY a.seq DESC LIMIT 1), '') <> r.actor)"
        )
    };
}
pub(super) use shared_sql;
