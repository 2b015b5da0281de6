//! Working an item on the desk: claim, assign, note, resolve (and the
//! suspension a confirmation triggers, in the resolution's transaction).

use serde_json::json;

use super::desk::{ConfirmEffect, Resolution, Shown, MAX_NOTE_CHARS};
use super::{Caller, Desk, DeskError};
use crate::config::OnConfirm;
use crate::domain::access::Role;
use crate::domain::audit::AuditEvent;
use crate::domain::review::ReviewItem;
use crate::policy::access::Action;
use crate::store::{ItemChange, NewSuspension};

impl Desk {
    /// Claim the most severe, oldest open item; `None` when the queue is empty.
    pub async fn claim_next(&self, caller: &Caller) -> Result<Option<Shown>, DeskError> {
        self.gate(caller, Action::ClaimItem)?;
        let event = self.audit_event(caller, "review_item.claimed", None, json!({}));
        let claimed = self
            .store
            .claim_next_item(&caller.principal.name, self.now(), &event)
            .await?;
        match claimed {
            Some(item) => Ok(Some(self.shown(&caller.principal, item).await?)),
            None => Ok(None),
        }
    }

    /// Assign an item to an active reviewer or contractor.
    pub async fn assign(
        &self,
        caller: &Caller,
        id: &str,
        assignee: &str,
    ) -> Result<Shown, DeskError> {
        self.gate(caller, Action::AssignItem)?;
        let item = self.visible_item(caller, id).await?.item;
        let now = self.now();
        let target = self
            .store
            .list_principals()
            .await?
            .into_iter()
            .find(|p| p.name == assignee && p.is_active(now) && p.role != Role::Auditor)
            .ok_or_else(|| DeskError::Invalid(format!("{assignee:?} is not an active reviewer")))?;
        let event = self.audit_event(
            caller,
            "review_item.assigned",
            Some(&item),
            json!({"assignee": target.name}),
        );
        self.apply(&item, &ItemChange::Assign(target.name), &event)
            .await?;
        self.current(caller, &item).await
    }

    /// Add a note (1 to [`MAX_NOTE_CHARS`] characters).
    pub async fn note(&self, caller: &Caller, id: &str, text: String) -> Result<Shown, DeskError> {
        self.gate(caller, Action::NoteItem)?;
        let item = self.visible_item(caller, id).await?.item;
        self.add_note(caller, &item, text).await?;
        self.current(caller, &item).await
    }

    /// Resolve an item; a confirmation applies [`Desk::confirm_effect`] in
    /// the same transaction.
    pub async fn resolve(
        &self,
        caller: &Caller,
        id: &str,
        resolution: Resolution,
        note: Option<String>,
    ) -> Result<Shown, DeskError> {
        self.gate(caller, Action::ResolveItem)?;
        let item = self.visible_item(caller, id).await?.item;
        if let Some(text) = note {
            self.add_note(caller, &item, text).await?;
        }
        let event = self.audit_event(
            caller,
            "review_item.resolved",
            Some(&item),
            json!({"resolution": resolution.as_str()}),
        );
        let suspension = match resolution {
            Resolution::Confirmed => self.suspension_for(caller, &item).await?.map(Box::new),
            Resolution::Dismissed => None,
        };
        let suspends = suspension.is_some();
        let resolve = ItemChange::Resolve {
            resolution: resolution.as_str().to_owned(),
            by: caller.principal.name.clone(),
            suspension,
        };
        self.apply(&item, &resolve, &event).await?;
        if suspends {
            // This replica applies it at once, the others within their refresh.
            if let Err(e) = self.suspensions.refresh(self.store.as_ref()).await {
                tracing::warn!(error = %e, "suspensions refresh after a confirmation failed");
            }
        }
        self.current(caller, &item).await
    }

    /// What confirming `item` (sent with the key `key_id`) suspends.
    pub fn confirm_effect(&self, item: &ReviewItem, key_id: &str) -> ConfirmEffect {
        let tenant = item.tenant.0.clone();
        match self.config.review.on_confirm {
            OnConfirm::None => ConfirmEffect::Nothing,
            OnConfirm::SuspendTenant => ConfirmEffect::SuspendTenant { tenant },
            OnConfirm::SuspendKey => ConfirmEffect::SuspendKey {
                tenant,
                key_id: key_id.to_owned(),
            },
        }
    }

    /// The suspension a confirmation triggers, as configured (audited), to
    /// be written in the resolution's transaction.
    async fn suspension_for(
        &self,
        caller: &Caller,
        item: &ReviewItem,
    ) -> Result<Option<NewSuspension>, DeskError> {
        let key = match self.config.review.on_confirm {
            OnConfirm::None => return Ok(None),
            OnConfirm::SuspendTenant => None,
            OnConfirm::SuspendKey => {
                let record = self
                    .store
                    .get_record(item.record_id)
                    .await?
                    .ok_or(DeskError::NotFound)?;
                Some(record.meta.key_id.0)
            }
        };
        let reason = format!("confirmed abuse in review item {}", item.record_id);
        let event = self.audit_event(
            caller,
            "suspension.added",
            Some(item),
            json!({"key_id": key, "reason": reason}),
        );
        Ok(Some(NewSuspension {
            tenant: item.tenant.clone(),
            key_id: key,
            reason,
            created_by: format!("principal:{}", caller.principal.name),
            audit: event,
        }))
    }

    /// Apply a change with its audit entry.
    async fn apply(
        &self,
        item: &ReviewItem,
        change: &ItemChange,
        event: &AuditEvent,
    ) -> Result<(), DeskError> {
        let applied = self
            .store
            .update_review_item(item.record_id, change, self.now(), event)
            .await?;
        match applied {
            true => Ok(()),
            // Resolved already (or swept meanwhile): nothing to change.
            false => Err(DeskError::Invalid("the item is resolved".into())),
        }
    }

    async fn add_note(
        &self,
        caller: &Caller,
        item: &ReviewItem,
        text: String,
    ) -> Result<(), DeskError> {
        if text.trim().is_empty() || text.chars().count() > MAX_NOTE_CHARS {
            return Err(DeskError::Invalid(format!(
                "a note is 1 to {MAX_NOTE_CHARS} characters"
            )));
        }
        let event = self.audit_event(caller, "review_item.noted", Some(item), json!({}));
        let note = ItemChange::Note {
            author: caller.principal.name.clone(),
            text,
        };
        self.apply(item, &note, &event).await
    }

    /// The item as it now is.
    async fn current(&self, caller: &Caller, item: &ReviewItem) -> Result<Shown, DeskError> {
        let item = self
            .store
            .review_item(item.record_id)
            .await?
            .ok_or(DeskError::NotFound)?;
        self.shown(&caller.principal, item).await
    }
}
