//! The review queue's vocabulary: items, the flag that opens one,
//! suspensions, legal holds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::verdict::{strongest, RuleAction, Severity, Verdict};
use crate::domain::{RecordId, TenantId};

/// A review item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    pub record_id: RecordId,
    pub tenant: TenantId,
    pub severity: Severity,
    pub action: RuleAction,
    pub verdicts: Vec<Verdict>,
    pub content_kept: bool,
    pub status: String,
    pub assignee: Option<String>,
    pub resolution: Option<String>,
    /// Notes as stored: a JSON array of `{author, at, text}`.
    pub notes: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A key or tenant suspended after confirmed abuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub id: i64,
    pub tenant: TenantId,
    /// `None`: the whole tenant.
    pub key_id: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub lifted_at: Option<OffsetDateTime>,
    pub lifted_by: Option<String>,
}

/// What opens a review item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewFlag {
    pub verdicts: Vec<Verdict>,
    pub action: RuleAction,
    pub severity: Severity,
    /// The record's content is stored with it (never for ZDR tenants).
    pub content_kept: bool,
    /// The item expires with the record's content (the review period).
    pub expires_at: OffsetDateTime,
}

impl ReviewFlag {
    /// The flag for these verdicts, or `None` when there are none.
    pub fn from_verdicts(
        verdicts: Vec<Verdict>,
        content_kept: bool,
        expires_at: OffsetDateTime,
    ) -> Option<Self> {
        let (action, severity) = strongest(&verdicts)?;
        Some(Self {
            verdicts,
            action,
            severity,
            content_kept,
            expires_at,
        })
    }

    /// This flag added to an item that already has `verdicts`.
    pub fn merged_with(
        &self,
        severity: Severity,
        action: RuleAction,
        verdicts: Vec<Verdict>,
    ) -> Self {
        let mut all = verdicts;
        all.extend(self.verdicts.iter().cloned());
        Self {
            verdicts: all,
            action: action.max(self.action),
            severity: severity.max(self.severity),
            content_kept: self.content_kept,
            expires_at: self.expires_at,
        }
    }

    pub fn reasons_json(&self) -> String {
        serde_json::to_string(&self.verdicts).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// A legal hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: i64,
    pub tenant: TenantId,
    /// `None`: every record of the tenant.
    pub record: Option<RecordId>,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub ends_at: OffsetDateTime,
    pub released_at: Option<OffsetDateTime>,
    pub released_by: Option<String>,
}

impl LegalHold {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.released_at.is_none() && self.ends_at > now
    }
}
