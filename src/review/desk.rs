//! The review desk: every action on the review queue, behind one gate.
//! The admin API (`http::review`) and the web console (`console`) are two
//! faces of it: each authenticates its caller its own way (a bearer token,
//! a session), then calls the desk, which decides with `policy::access`
//! whether the caller may act, hides what it may not see (404), audits
//! every payload read and change in the same transaction as the action,
//! and redacts for contractors. Neither face decides access on its own.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::payload::Content;
use crate::abuse::suspensions::Suspensions;
use crate::crypto::ContentKeys;
use crate::domain::access::{token_hash, Principal};
use crate::domain::audit::AuditEvent;
use crate::domain::clock::Clock;
use crate::domain::records::RecordMeta;
use crate::domain::review::{LegalHold, ReviewItem};
use crate::domain::verdict::Severity;
use crate::domain::RecordId;
use crate::policy::access::{self, Action};
use crate::store::{ReviewFilter, ReviewOrder, Store, StoreError};

pub const MAX_PAGE: i64 = 500;
pub const MAX_NOTE_CHARS: usize = 4_000;

/// Why the desk refused (mapped to HTTP once, in `http::error`).
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// No active principal: unknown, expired or revoked.
    #[error("not signed in")]
    Unauthenticated,
    /// The caller's role may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such thing, or one the caller may not see.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("the store is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// Who is acting, as the face that authenticated it says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Where the request came from (the peer address), for the audit log.
    pub source: String,
    /// How a console user signed in (`token`, `oidc:<subject>`), added to
    /// the details of every audit entry it causes; `None` on the API.
    pub via: Option<String>,
}

/// How an item is shown to a principal.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// A contractor: personal data redacted, notes included.
    pub redacted: bool,
    /// A legal hold keeps the item past its expiry.
    pub held: bool,
}

/// An item as the caller may see it.
#[derive(Debug, Clone)]
pub struct Shown {
    pub item: ReviewItem,
    pub view: View,
}

impl Shown {
    /// The notes as the caller may read them: what reviewers wrote may
    /// quote the payload, so a redacted view redacts their text too.
    pub fn notes(&self) -> Value {
        let mut notes = self.item.notes.clone();
        if let (true, Some(list)) = (self.view.redacted, notes.as_array_mut()) {
            for note in list {
                if let Some(text) = note.get("text").and_then(Value::as_str) {
                    note["text"] = Value::String(super::redact::redact(text));
                }
            }
        }
        notes
    }
}

/// An item read with its record: what was audited, opened as the caller may see it.
pub struct ItemRead {
    pub shown: Shown,
    pub meta: RecordMeta,
    pub content: Content,
}

/// A list query as a query string spells it; [`Desk::list`] checks it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<String>,
    pub tenant: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
    pub assignee: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
    /// `created` (oldest first, the default) or `severity` (most severe
    /// first, oldest first within a severity).
    pub order: Option<String>,
}

/// One page of the queue.
pub struct ItemPage {
    pub items: Vec<Shown>,
    pub next_cursor: Option<String>,
}

/// A resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Dismissed,
    Confirmed,
}

impl Resolution {
    pub fn parse(s: &str) -> Result<Self, DeskError> {
        match s {
            "dismissed" => Ok(Self::Dismissed),
            "confirmed" => Ok(Self::Confirmed),
            _ => Err(DeskError::Invalid(
                "resolution is dismissed or confirmed".into(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dismissed => "dismissed",
            Self::Confirmed => "confirmed",
        }
    }
}

/// What confirming an item suspends (`review.on_confirm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmEffect {
    Nothing,
    SuspendKey { tenant: String, key_id: String },
    SuspendTenant { tenant: String },
}

/// The review desk (see the module's comment).
#[derive(Clone)]
pub struct Desk {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) suspensions: Arc<Suspensions>,
    /// Opens encrypted content, when encryption is on.
    pub(super) keys: Option<Arc<ContentKeys>>,
    pub(super) config: Arc<crate::config::Config>,
}

impl Desk {
    pub fn new(
        config: Arc<crate::config::Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        suspensions: Arc<Suspensions>,
        keys: Option<Arc<ContentKeys>>,
    ) -> Self {
        Self {
            config,
            store,
            clock,
            suspensions,
            keys,
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The content keys, when encryption is on.
    pub fn keys(&self) -> Option<&ContentKeys> {
        self.keys.as_deref()
    }

    /// The active principal a bearer token names. The token itself is never
    /// compared or stored: it is looked up by its hash.
    pub async fn principal_for_token(&self, token: &str) -> Result<Principal, DeskError> {
        let principal = self
            .store
            .principal_by_token(&token_hash(token.trim()))
            .await?
            .ok_or(DeskError::Unauthenticated)?;
        match principal.is_active(self.now()) {
            true => Ok(principal),
            false => Err(DeskError::Unauthenticated),
        }
    }

    /// The gate: an active principal whose role allows `action`.
    pub fn gate(&self, caller: &Caller, action: Action) -> Result<(), DeskError> {
        if !caller.principal.is_active(self.now()) {
            return Err(DeskError::Unauthenticated);
        }
        match access::allowed(caller.principal.role, action) {
            true => Ok(()),
            false => Err(DeskError::Forbidden),
        }
    }

    /// Whether the caller may attempt `action` (to offer it or not).
    pub fn may(&self, caller: &Caller, action: Action) -> bool {
        self.gate(caller, action).is_ok()
    }

    /// An audit entry of `caller` doing `action`.
    pub fn audit_event(
        &self,
        caller: &Caller,
        action: &str,
        item: Option<&ReviewItem>,
        mut details: Value,
    ) -> AuditEvent {
        if let (Some(via), Some(map)) = (&caller.via, details.as_object_mut()) {
            map.insert("via".into(), Value::String(via.clone()));
        }
        AuditEvent {
            at: self.now(),
            actor: format!("principal:{}", caller.principal.name),
            action: action.into(),
            tenant: item.map(|i| i.tenant.clone()),
            subject: None,
            source: caller.source.clone(),
            details,
        }
    }

    /// A page of the queue (metadata only: listing is not audited).
    pub async fn list(&self, caller: &Caller, params: &ListParams) -> Result<ItemPage, DeskError> {
        self.gate(caller, Action::ListItems)?;
        let severity = params
            .severity
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                Severity::parse(s).ok_or_else(|| {
                    DeskError::Invalid("severity is low, medium, high or critical".into())
                })
            })
            .transpose()?;
        let order = match params.order.as_deref() {
            None | Some("" | "created") => ReviewOrder::Created,
            Some("severity") => ReviewOrder::Severity,
            Some(_) => return Err(DeskError::Invalid("order is created or severity".into())),
        };
        let limit = params.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let now = self.now();
        let filter = ReviewFilter {
            status: nonempty(&params.status),
            tenant: nonempty(&params.tenant),
            rule: nonempty(&params.rule),
            severity,
            // Contractors list only what is assigned to them.
            assignee: match access::sees_only_assigned(caller.principal.role) {
                true => Some(caller.principal.name.clone()),
                false => nonempty(&params.assignee),
            },
            since: instant_param("since", params.since.as_deref())?,
            until: instant_param("until", params.until.as_deref())?,
            after: params
                .cursor
                .as_deref()
                .filter(|c| !c.is_empty())
                .map(|c| parse_cursor(c, order))
                .transpose()?,
            order,
            limit,
            live_at: Some(now),
        };
        let items = self.store.list_review_items(&filter).await?;
        let next_cursor = (items.len() as i64 == limit)
            .then(|| items.last().map(|i| cursor_of(i, order)))
            .flatten();
        let holds = self.holds(now).await?;
        let view = view_for(&caller.principal);
        let items = items
            .into_iter()
            .map(|item| Shown {
                view: View {
                    held: keeps(&holds, &item),
                    ..view
                },
                item,
            })
            .collect();
        Ok(ItemPage { items, next_cursor })
    }

    /// One item with its payload, audited in the same transaction as the read.
    pub async fn read(&self, caller: &Caller, id: &str) -> Result<ItemRead, DeskError> {
        self.gate(caller, Action::ReadItem)?;
        let shown = self.visible_item(caller, id).await?;
        let redacted = shown.view.redacted;
        let event = self.audit_event(
            caller,
            "review_item.read",
            Some(&shown.item),
            json!({"redacted": redacted}),
        );
        let (item, record) = self
            .store
            .read_review_item(shown.item.record_id, &event)
            .await?
            .ok_or(DeskError::NotFound)?;
        // Reassigned between the check and the read: the attempt is audited,
        // the payload withheld.
        if access::sees_only_assigned(caller.principal.role)
            && item.assignee.as_deref() != Some(caller.principal.name.as_str())
        {
            return Err(DeskError::NotFound);
        }
        let content = Content::open(&record, redacted, self.keys.as_deref());
        Ok(ItemRead {
            shown: Shown {
                item,
                view: shown.view,
            },
            meta: record.meta,
            content,
        })
    }

    /// Live items counted by `(status, severity)`.
    pub async fn counts(&self, caller: &Caller) -> Result<Vec<(String, String, i64)>, DeskError> {
        self.gate(caller, Action::Counts)?;
        Ok(self.store.review_counts(self.now()).await?)
    }

    /// The item if the caller may see it; otherwise "not found".
    pub(super) async fn visible_item(&self, caller: &Caller, id: &str) -> Result<Shown, DeskError> {
        let id = id
            .parse::<Uuid>()
            .map(RecordId)
            .map_err(|_| DeskError::NotFound)?;
        let item = self
            .store
            .review_item(id)
            .await?
            .ok_or(DeskError::NotFound)?;
        if access::sees_only_assigned(caller.principal.role)
            && item.assignee.as_deref() != Some(caller.principal.name.as_str())
        {
            return Err(DeskError::NotFound);
        }
        let shown = self.shown(&caller.principal, item).await?;
        // Past its content's expiry an item is gone, unless a hold keeps it.
        if shown.item.expires_at <= self.now() && !shown.view.held {
            return Err(DeskError::NotFound);
        }
        Ok(shown)
    }

    pub(super) async fn shown(
        &self,
        principal: &Principal,
        item: ReviewItem,
    ) -> Result<Shown, DeskError> {
        let holds = self.holds(self.now()).await?;
        Ok(Shown {
            view: View {
                held: keeps(&holds, &item),
                ..view_for(principal)
            },
            item,
        })
    }

    /// The legal holds active at `now`.
    async fn holds(&self, now: OffsetDateTime) -> Result<Vec<LegalHold>, DeskError> {
        let holds = self.store.list_holds().await?;
        Ok(holds.into_iter().filter(|h| h.is_active(now)).collect())
    }
}

fn view_for(principal: &Principal) -> View {
    View {
        redacted: access::reads_redacted(principal.role),
        held: false,
    }
}

fn keeps(holds: &[LegalHold], item: &ReviewItem) -> bool {
    holds
        .iter()
        .any(|h| h.tenant == item.tenant && h.record.is_none_or(|r| r == item.record_id))
}

/// An RFC 3339 query parameter; empty counts as absent.
pub fn instant_param(name: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, DeskError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| DeskError::Invalid(format!("{name} must be an RFC 3339 instant")))
        })
        .transpose()
}

/// A cursor: the last item's position in the page's order.
fn cursor_of(item: &ReviewItem, order: ReviewOrder) -> String {
    let micros = item.created_at.unix_timestamp_nanos() / 1_000;
    match order {
        ReviewOrder::Created => format!("{micros}_{}", item.record_id),
        ReviewOrder::Severity => {
            format!("{}_{micros}_{}", item.severity.as_str(), item.record_id)
        }
    }
}

fn parse_cursor(
    cursor: &str,
    order: ReviewOrder,
) -> Result<(Option<Severity>, OffsetDateTime, RecordId), DeskError> {
    let bad = || DeskError::Invalid("cursor is not one this API gave".into());
    let (severity, rest) = match order {
        ReviewOrder::Created => (None, cursor),
        ReviewOrder::Severity => {
            let (s, rest) = cursor.split_once('_').ok_or_else(bad)?;
            (Some(Severity::parse(s).ok_or_else(bad)?), rest)
        }
    };
    let (micros, id) = rest.split_once('_').ok_or_else(bad)?;
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    let nanos = micros.checked_mul(1_000).ok_or_else(bad)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((severity, at, RecordId(id.parse().map_err(|_| bad())?)))
}

pub fn format_instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}
