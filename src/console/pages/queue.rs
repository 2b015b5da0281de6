//! The queue: open items by default (a contractor's claimed ones, which are
//! assigned to it), most severe first and oldest first within a severity;
//! filters; counts; "claim next".

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::*;
use crate::console::session::Posted;
use crate::console::sign_in::Empty;
use crate::console::{refused, see_other};
use crate::domain::verdict::Severity;
use crate::review::desk::{ListParams, Shown};

const PAGE: i64 = 50;
const STATUSES: [&str; 4] = ["open", "claimed", "resolved", "all"];
const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct QueueQuery {
    status: Option<String>,
    severity: Option<String>,
    tenant: Option<String>,
    rule: Option<String>,
    assignee: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

impl QueueQuery {
    fn status(&self) -> &str {
        self.status
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("open")
    }

    fn params(&self) -> ListParams {
        ListParams {
            status: Some(self.status())
                .filter(|s| *s != "all")
                .map(str::to_owned),
            severity: self.severity.clone(),
            tenant: self.tenant.clone(),
            rule: self.rule.clone(),
            assignee: self.assignee.clone(),
            since: instant_field(self.since.as_deref()),
            cursor: self.cursor.clone(),
            limit: Some(PAGE),
            order: Some("severity".into()),
            until: None,
        }
    }

    /// This query's address with `cursor`.
    fn with_cursor(&self, cursor: &str) -> String {
        let q = query_string(&[
            ("status", Some(self.status())),
            ("severity", self.severity.as_deref()),
            ("tenant", self.tenant.as_deref()),
            ("rule", self.rule.as_deref()),
            ("assignee", self.assignee.as_deref()),
            ("since", self.since.as_deref()),
            ("cursor", Some(cursor)),
        ]);
        format!("/console/?{q}")
    }
}

pub(in crate::console) async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Response {
    // A filter that does not parse is refused, never silently dropped.
    let mut query = match query {
        Ok(q) => q.0,
        Err(e) => return refused(crate::http::error::ApiError::InvalidRequest(e.body_text())),
    };
    let desk = &state.desk;
    let caller = &signed.caller;
    // Open items by default; a contractor's are assigned to it, so claimed.
    let default_status = match crate::policy::access::sees_only_assigned(caller.principal.role) {
        true => "claimed",
        false => "open",
    };
    query
        .status
        .get_or_insert_with(|| default_status.to_owned());
    let counts = match desk.may(caller, Action::Counts) {
        true => match desk.counts(caller).await {
            Ok(c) => Some(c),
            Err(e) => return refused(e.into()),
        },
        false => None,
    };
    let listing = match desk.may(caller, Action::ListItems) {
        true => match desk.list(caller, &query.params()).await {
            Ok(page) => Some(page),
            Err(e) => return refused(e.into()),
        },
        false => None,
    };
    let now = desk.now();
    let body = html! {
        h1 { "Review queue" }
        (done_notice(query.done.as_deref()))
        @if let Some(counts) = &counts { (count_cards(counts)) }
        @if let Some(page) = &listing {
            div.actions {
                @if desk.may(caller, Action::ClaimItem) {
                    form method="post" action="/console/claim" {
                        (csrf(&signed))
                        button #claim-next type="submit" data-key="c" { "Claim next" }
                    }
                }
                a #mine href={ "/console/?" (query_string(&[("status", Some("claimed")), ("assignee", Some(&caller.principal.name))])) } { "My claimed items" }
                span.muted { "Press " kbd { "?" } " for keys." }
            }
            (filters(&query))
            (table(&page.items, now))
            div.pager {
                @if query.cursor.is_some() { a href=(query.with_cursor("")) { "First page" } }
                @if let Some(next) = &page.next_cursor { a #next-page href=(query.with_cursor(next)) { "Next page" } }
            }
        } @else {
            p.notice { "Your role sees the queue's counts and the audit log, never a payload." }
        }
    };
    layout(&state, &signed, "/console/", "Queue", body)
}

fn count_cards(counts: &[(String, String, i64)]) -> Markup {
    let count = |status: &str, severity: Option<&str>| -> i64 {
        counts
            .iter()
            .filter(|(s, sev, _)| s == status && severity.is_none_or(|v| v == sev))
            .map(|(_, _, n)| n)
            .sum()
    };
    html! {
        div.counts #counts {
            @for severity in SEVERITIES {
                div { b { (count("open", Some(severity.as_str()))) } (severity_badge(severity)) " open" }
            }
            div { b { (count("claimed", None)) } "claimed" }
            div { b { (count("resolved", None)) } "resolved" }
        }
    }
}

fn filters(q: &QueueQuery) -> Markup {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form.filters.card method="get" action="/console/" {
            label { "Status"
                select name="status" {
                    @for s in STATUSES { option value=(s) selected[q.status() == s] { (s) } }
                }
            }
            label { "Severity"
                select name="severity" {
                    option value="" { "any" }
                    @for s in SEVERITIES {
                        option value=(s.as_str()) selected[q.severity.as_deref() == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "Tenant" input name="tenant" value=(text(&q.tenant)) data-key="/"; }
            label { "Rule" input name="rule" value=(text(&q.rule)); }
            label { "Assignee" input name="assignee" value=(text(&q.assignee)); }
            label { "Since" input type="date" name="since" value=(text(&q.since)); }
            button type="submit" { "Filter" }
            a href="/console/" { "Reset" }
        }
    }
}

fn table(items: &[Shown], now: time::OffsetDateTime) -> Markup {
    let ids: Vec<String> = items.iter().map(|s| s.item.record_id.to_string()).collect();
    html! {
        @if items.is_empty() {
            p.notice #queue-empty { "No item matches." }
        }
        table #queue data-queue-ids=(ids.join(" ")) {
            thead { tr { th { "Severity" } th { "Opened" } th { "Tenant" } th { "Rules" } th { "Status" } th { "Assignee" } th { "Content" } } }
            tbody {
                @for shown in items {
                    @let item = &shown.item;
                    @let href = format!("/console/items/{}", item.record_id);
                    tr data-href=(href) {
                        td { (severity_badge(item.severity)) }
                        td title=(when(item.created_at)) { (ago(item.created_at, now)) }
                        td { (item.tenant.0) }
                        td { a href=(href) { (item.verdicts.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>().join(", ")) } }
                        td { (status_badge(&item.status)) @if shown.view.held { " " span.badge.held { "held" } } }
                        td { (item.assignee.as_deref().unwrap_or("—")) }
                        td { @if item.content_kept { "kept" } @else { span.muted { "none" } } }
                    }
                }
            }
        }
    }
}

/// `POST /console/claim`: the most severe, oldest open item, then its page.
pub(in crate::console) async fn claim_next(
    State(state): State<ConsoleState>,
    posted: Posted<Empty>,
) -> Response {
    match state.desk.claim_next(&posted.signed.caller).await {
        Ok(Some(shown)) => see_other(&format!("/console/items/{}", shown.item.record_id)),
        Ok(None) => see_other("/console/?done=empty"),
        Err(e) => refused(e.into()),
    }
}
