//! Principals as admins manage them on the desk: list, add (the token is
//! shown once), revoke. Revoking ends the principal's console sessions in
//! the same transaction.

use serde_json::json;
use time::OffsetDateTime;

use super::desk::{format_instant, Caller, Desk, DeskError};
use crate::domain::access::{issue_token, token_hash, Principal, Role};
use crate::policy::access::Action;
use crate::store::NewPrincipal;

/// Longest principal name accepted.
const MAX_NAME_CHARS: usize = 100;

impl Desk {
    pub async fn principals(&self, caller: &Caller) -> Result<Vec<Principal>, DeskError> {
        self.gate(caller, Action::ManagePrincipals)?;
        Ok(self.store.list_principals().await?)
    }

    /// Whom an item may be assigned to: active principals other than auditors.
    pub async fn assignees(&self, caller: &Caller) -> Result<Vec<Principal>, DeskError> {
        self.gate(caller, Action::AssignItem)?;
        let now = self.now();
        let all = self.store.list_principals().await?;
        Ok(all
            .into_iter()
            .filter(|p| p.is_active(now) && p.role != Role::Auditor)
            .collect())
    }

    /// Add a principal; returns its bearer token, which is never stored.
    pub async fn add_principal(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<String, DeskError> {
        self.gate(caller, Action::ManagePrincipals)?;
        let name = name.trim();
        let printable = name.chars().all(|c| !c.is_control());
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !printable {
            return Err(DeskError::Invalid(format!(
                "a name is 1 to {MAX_NAME_CHARS} printable characters"
            )));
        }
        let now = self.now();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(DeskError::Invalid(
                "the expiry must be in the future".into(),
            ));
        }
        if self
            .store
            .list_principals()
            .await?
            .iter()
            .any(|p| p.name == name)
        {
            return Err(DeskError::Invalid(format!("a principal {name:?} exists")));
        }
        let token = issue_token();
        let event = self.audit_event(
            caller,
            "principal.added",
            None,
            json!({"name": name, "role": role, "expires_at": expires_at.map(format_instant)}),
        );
        let principal = NewPrincipal {
            name: name.to_owned(),
            role,
            token_hash: token_hash(&token),
            created_at: now,
            expires_at,
        };
        match self.store.add_principal(&principal, &event).await {
            Ok(_) => Ok(token),
            // Another admin took the name meanwhile.
            Err(e) if e.is_unique_violation() => {
                Err(DeskError::Invalid(format!("a principal {name:?} exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Revoke an active principal (never oneself: an admin cannot lock the
    /// last door from inside by mistake).
    pub async fn revoke_principal(&self, caller: &Caller, name: &str) -> Result<(), DeskError> {
        self.gate(caller, Action::ManagePrincipals)?;
        if name == caller.principal.name {
            return Err(DeskError::Invalid("you cannot revoke yourself".into()));
        }
        let event = self.audit_event(caller, "principal.revoked", None, json!({"name": name}));
        match self
            .store
            .revoke_principal(name, self.now(), &event)
            .await?
        {
            true => Ok(()),
            false => Err(DeskError::NotFound),
        }
    }
}
