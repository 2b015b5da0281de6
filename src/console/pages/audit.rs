//! The audit log (auditors and admins) with filters, and the chain check.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::*;
use crate::console::refused;
use crate::review::audit::{AuditParams, ChainCheck};

#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
}

pub(in crate::console) async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    // A filter that does not parse is refused, never silently dropped.
    let q = match query {
        Ok(q) => q.0,
        Err(e) => return refused(crate::http::error::ApiError::InvalidRequest(e.body_text())),
    };
    let params = AuditParams {
        actor: q.actor.clone(),
        action: q.action.clone(),
        target: q.target.clone(),
        since: instant_field(q.since.as_deref()),
        until: until_field(q.until.as_deref()),
        after: q.after,
        limit: Some(100),
    };
    let page = match state.desk.audit_log(&signed.caller, &params).await {
        Ok(page) => page,
        Err(e) => return refused(e.into()),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let next = page.next_after.map(|after| {
        let after = after.to_string();
        let q = query_string(&[
            ("actor", q.actor.as_deref()),
            ("action", q.action.as_deref()),
            ("target", q.target.as_deref()),
            ("since", q.since.as_deref()),
            ("until", q.until.as_deref()),
            ("after", Some(&after)),
        ]);
        format!("/console/audit?{q}")
    });
    let body = html! {
        h1 { "Audit log" }
        p { a #verify href="/console/audit/verify" { "Verify the hash chain" } span.muted { " (reads every entry)" } }
        form.filters.card method="get" action="/console/audit" {
            label { "Actor" input name="actor" value=(text(&q.actor)) placeholder="principal:alice" data-key="/"; }
            label { "Action" input name="action" value=(text(&q.action)) placeholder="review_item.read"; }
            label { "Target" input name="target" value=(text(&q.target)) placeholder="review_item:…"; }
            label { "Since" input type="date" name="since" value=(text(&q.since)); }
            label { "Until" input type="date" name="until" value=(text(&q.until)); }
            button type="submit" { "Filter" }
            a href="/console/audit" { "Reset" }
        }
        table #audit {
            thead { tr { th { "#" } th { "At" } th { "Actor" } th { "Action" } th { "Tenant" } th { "Target" } th { "Source" } th { "Details" } } }
            tbody {
                @for e in &page.entries {
                    tr {
                        td { (e.seq) }
                        td { (when(e.at)) }
                        td { (e.actor) }
                        td { (e.action) }
                        td { (e.tenant.as_ref().map(|t| t.0.as_str()).unwrap_or("")) }
                        td { (e.subject.as_deref().unwrap_or("")) }
                        td { (e.source) }
                        td { code { (e.details) } }
                    }
                }
            }
        }
        div.pager { @if let Some(next) = &next { a #next-page href=(next) { "Next page" } } }
    };
    layout(&state, &signed, "/console/audit", "Audit log", body)
}

pub(in crate::console) async fn verify(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Response {
    let check = match state.desk.verify_audit_chain(&signed.caller).await {
        Ok(check) => check,
        Err(e) => return refused(e.into()),
    };
    let body = html! {
        h1 { "Audit chain" }
        @match &check {
            ChainCheck::Verified { entries, head_seq } => {
                p.notice #chain data-verified="true" {
                    span.ok { "The chain verifies." }
                    " " (entries) " entries, each linked to the one before, up to the recorded head (entry " (head_seq) ")."
                }
            }
            ChainCheck::Broken(why) => {
                p.notice.error #chain data-verified="false" { span.bad { "The chain does not verify: " } (why) }
            }
        }
        p { a href="/console/audit" { "← Audit log" } }
    };
    layout(&state, &signed, "/console/audit", "Audit chain", body)
}
