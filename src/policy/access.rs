//! Who may do what with the review queue (docs/design.md, roles). Pure.

use crate::domain::access::Role;

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
    /// Erase a tenant's data (admins only).
    EraseTenant,
    /// Add, list and revoke principals (admins only).
    ManagePrincipals,
    /// Tenants' consent history, current tags, holds and suspensions (no payload).
    ReadTenants,
}

/// Whether `role` may attempt `action` at all. Contractors are further
/// limited to items assigned to them ([`sees_only_assigned`]).
pub fn allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Reviewer => !matches!(action, ReadAudit | EraseTenant | ManagePrincipals),
        Role::Contractor => matches!(action, ListItems | ReadItem | NoteItem | ResolveItem),
        Role::Auditor => matches!(action, Counts | ReadAudit | ReadTenants),
    }
}

pub fn sees_only_assigned(role: Role) -> bool {
    role == Role::Contractor
}

pub fn reads_redacted(role: Role) -> bool {
    role == Role::Contractor
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::{issue_token, token_hash, TOKEN_PREFIX};

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
            EraseTenant,
            ManagePrincipals,
            ReadTenants,
        ];
        let allowed_for = |role| all.iter().filter(|a| allowed(role, **a)).count();
        assert_eq!(allowed_for(Role::Admin), 11);
        assert_eq!(allowed_for(Role::Contractor), 4);
        assert!(!allowed(Role::Reviewer, ManagePrincipals) && allowed(Role::Reviewer, ReadTenants));
        assert!(allowed(Role::Auditor, ReadTenants) && !allowed(Role::Contractor, ReadTenants));
        assert!(!allowed(Role::Reviewer, EraseTenant) && !allowed(Role::Auditor, EraseTenant));
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
