//! Who uses the admin API: principals and their roles.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Principals' bearer tokens begin with this.
pub const TOKEN_PREFIX: &str = "cstp_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, and principals.
    Admin,
    /// An employee: the whole queue.
    Reviewer,
    /// Only items assigned to them, personal data redacted, until expiry.
    Contractor,
    /// The audit log and aggregate counts, never a payload.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Admin, Self::Reviewer, Self::Contractor, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Reviewer => "reviewer",
            Self::Contractor => "contractor",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A principal as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl Principal {
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// `active`, `expired` or `revoked`, as listings show it.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        match (self.revoked_at, self.is_active(now)) {
            (Some(_), _) => "revoked",
            (None, true) => "active",
            (None, false) => "expired",
        }
    }
}

/// A new bearer token: shown once, stored only as its hash.
pub fn issue_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// A web console session as stored (never its cookie: only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: String,
    pub principal_id: i64,
    /// How it was opened: `token`, or `oidc:<subject>`.
    pub via: String,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// Its absolute end, whatever the activity.
    pub expires_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

impl ConsoleSession {
    /// Live at `now`: not ended, not past its end, not idle for `idle` or longer.
    pub fn is_live(&self, now: OffsetDateTime, idle: time::Duration) -> bool {
        self.ended_at.is_none() && now < self.expires_at && now - self.last_seen_at < idle
    }
}
