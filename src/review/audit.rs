//! The audit log as the desk shows it (auditors and admins), and whether
//! its hash chain verifies.

use serde::Deserialize;

use super::desk::{instant_param, Caller, Desk, DeskError, MAX_PAGE};
use crate::domain::audit::AuditEntry;
use crate::policy::access::Action;
use crate::store::AuditFilter;

/// An audit query as a query string spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Entries after this sequence number.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The `after` of the next page, when this one was full.
    pub next_after: Option<i64>,
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every entry links to the one before, up to the recorded head.
    Verified { entries: u64, head_seq: i64 },
    /// The first break, described.
    Broken(String),
}

impl Desk {
    pub async fn audit_log(
        &self,
        caller: &Caller,
        params: &AuditParams,
    ) -> Result<AuditPage, DeskError> {
        self.gate(caller, Action::ReadAudit)?;
        let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let filter = AuditFilter {
            actor: nonempty(&params.actor),
            action: nonempty(&params.action),
            subject: nonempty(&params.target),
            since: instant_param("since", params.since.as_deref())?,
            until: instant_param("until", params.until.as_deref())?,
            after: params.after.unwrap_or(0),
            limit,
        };
        let entries = self.store.query_audit(&filter).await?;
        let next_after = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        Ok(AuditPage {
            entries,
            next_after,
        })
    }

    /// Verify the whole chain (`custodian audit verify`'s check).
    pub async fn verify_audit_chain(&self, caller: &Caller) -> Result<ChainCheck, DeskError> {
        self.gate(caller, Action::ReadAudit)?;
        Ok(
            match crate::attest::verify_chain(self.store.as_ref()).await? {
                Ok((entries, head_seq, _)) => ChainCheck::Verified { entries, head_seq },
                Err(broken) => ChainCheck::Broken(broken),
            },
        )
    }
}
