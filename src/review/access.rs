//! Who may do what with the review queue (DESIGN.md, roles). Pure.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

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

/// What a request to the admin API wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListItems,
    ReadItem,
    ClaimItem,
    AssignItem,
    NoteItem,
    ResolveItem,
    Counts,
    ReadAudit,
}

/// Whether `role` may attempt `action` at all. Contractors are further
/// limited to items assigned to them ([`sees_only_assigned`]).
pub fn allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Reviewer => !matches!(action, ReadAudit),
        Role::Contractor => matches!(action, ListItems | ReadItem | NoteItem | ResolveItem),
        Role::Auditor => matches!(action, Counts | ReadAudit),
    }
}

pub fn sees_only_assigned(role: Role) -> bool {
    role == Role::Contractor
}

pub fn reads_redacted(role: Role) -> bool {
    role == Role::Contractor
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
}

pub const TOKEN_PREFIX: &str = "cstp_";

/// A new bearer token: shown once, stored only as its hash.
pub fn issue_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_matrix() {
        use Action::*;
        let all = [
            ListItems,
            ReadItem,
            ClaimItem,
            AssignItem,
            NoteItem,
            ResolveItem,
            Counts,
            ReadAudit,
        ];
        let allowed_for = |role| all.iter().filter(|a| allowed(role, **a)).count();
        assert_eq!(allowed_for(Role::Admin), 8);
        assert!(!allowed(Role::Reviewer, ReadAudit) && allowed(Role::Reviewer, ClaimItem));
        assert!(!allowed(Role::Contractor, ClaimItem) && !allowed(Role::Contractor, AssignItem));
        assert!(!allowed(Role::Auditor, ReadItem) && !allowed(Role::Auditor, ListItems));
        assert!(allowed(Role::Auditor, ReadAudit) && allowed(Role::Auditor, Counts));
    }

    #[test]
    fn tokens_are_unique_and_only_their_hash_is_kept() {
        let (a, b) = (issue_token(), issue_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 69);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert!(!token_hash(&a).contains(&a[5..]));
    }
}
