//! One item: its metadata, verdicts, the exchange as a conversation (raw
//! JSON one click away), notes, and assign / note / resolve. Reading the
//! page is the desk's audited read, in the same transaction.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::*;
use crate::console::session::Posted;
use crate::console::{refused, see_other};
use crate::domain::records::RecordMeta;
use crate::review::conversation::{Conversation, Part, Turn};
use crate::review::desk::{ConfirmEffect, ItemRead, Resolution, Shown};
use crate::review::payload::{Content, Payload};

#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct ItemQuery {
    done: Option<String>,
}

pub(in crate::console) async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    query: Result<Query<ItemQuery>, QueryRejection>,
) -> Response {
    let read = match state.desk.read(&signed.caller, &id).await {
        Ok(read) => read,
        Err(e) => return refused(e.into()),
    };
    let assignees = match state.desk.may(&signed.caller, Action::AssignItem) {
        true => match state.desk.assignees(&signed.caller).await {
            Ok(assignees) => assignees,
            Err(e) => return refused(e.into()),
        },
        false => Vec::new(),
    };
    let done = query.ok().and_then(|q| q.0.done);
    let ItemRead {
        shown,
        meta,
        content,
    } = &read;
    let body = html! {
        p { a href="/console/" { "← Queue" } }
        div data-item-id=(shown.item.record_id) {
            h1 {
                "Review item " (severity_badge(shown.item.severity)) " " (status_badge(&shown.item.status))
                @if shown.view.held { " " span.badge.held { "held by a legal hold" } }
            }
            (done_notice(done.as_deref()))
            div.grid {
                div { (payload_section(content)) }
                div {
                    (verdicts(shown))
                    (actions(&state, &signed, shown, meta, &assignees))
                    (notes(&signed, shown))
                    (metadata(shown, meta, content))
                }
            }
        }
    };
    layout(&state, &signed, "/console/", "Review item", body)
}

fn payload_section(content: &Content) -> Markup {
    let Content::Readable(payload) = content else {
        let text = match content {
            Content::NotKept => "Zero-data-retention tenant: the content was never stored. Only the metadata and verdicts remain.",
            Content::Unreadable => "The content is stored but cannot be opened (a damaged value, or a key that is not the tenant's).",
            _ => "The content has expired (swept, or its key destroyed): only the metadata and verdicts remain.",
        };
        return html! { p.notice.warn #content-state data-state=(content.state()) { (text) } };
    };
    let conversation = payload.conversation();
    html! {
        @if payload.redacted() {
            p.notice #redacted { "Personal data (e-mail addresses, phone and card numbers, keys) is redacted for your role." }
        }
        @if payload.kept_for_safety_review {
            p.notice.warn { "Zero-data-retention tenant: this content is kept only because a rule flagged it, for this review." }
        }
        (conversation_view(&conversation, payload))
        details.card #raw data-key="r" {
            summary { "Raw JSON" }
            h2 { "Request" @if payload.request_truncated { " (cut at the capture limit)" } }
            pre.raw #raw-request { (pretty(&payload.request_text())) }
            h2 { "Response" @if payload.response_truncated { " (cut at the capture limit)" } }
            pre.raw #raw-response { (pretty(&payload.response_raw())) }
        }
    }
}

/// JSON laid out for reading; anything else as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn conversation_view(c: &Conversation, payload: &Payload) -> Markup {
    html! {
        section.card #conversation {
            h2 { "Request" span.muted { " · " (c.api.name()) } }
            @match &c.request {
                Some(turns) => { @for t in turns { (turn(t)) } }
                None => { p.muted { "Not laid out as a conversation; see the raw request." } }
            }
            h2 { "Answer" @if payload.response_truncated { span.muted { " (cut at the capture limit)" } } }
            @match &c.answer {
                Some(turns) => { @for t in turns { (turn(t)) } }
                None => { div.turn.role-assistant { pre.text { (payload.response_text()) } } }
            }
        }
    }
}

fn turn(t: &Turn) -> Markup {
    let class: String = t.role.chars().filter(char::is_ascii_alphabetic).collect();
    html! {
        div class={ "turn role-" (class) } {
            div.role { (t.role) }
            @for part in &t.parts {
                @match part {
                    Part::Text(text) => { pre.text { (text) } }
                    Part::ToolCall { name, arguments } => { div.call { "→ call " b { (name) } "\n" (pretty(arguments)) } }
                    Part::ToolResult { call, content } => { div.result { "← result of " (call) "\n" (content) } }
                    Part::Other(kind) => { div.other { "[" (kind) "]" } }
                }
            }
        }
    }
}

fn metadata(shown: &Shown, meta: &RecordMeta, content: &Content) -> Markup {
    let item = &shown.item;
    let tag = match meta.training.usable {
        true => "allowed",
        false => "denied",
    };
    html! {
        section.card #metadata {
            h2 { "Record" }
            dl.meta {
                dt { "Tenant" } dd { (item.tenant.0) }
                dt { "Route" } dd { (meta.route) " · " (meta.method) " " (meta.path) }
                dt { "Model" } dd { (meta.model.as_deref().unwrap_or("—")) }
                dt { "Received" } dd { (when(meta.received_at)) }
                dt { "Outcome" } dd { (meta.outcome.as_str()) " · upstream " (meta.status) @if meta.streamed { " · streamed" } }
                dt { "Training" } dd #training { (tag) " (" (meta.training.basis.as_str()) ")" }
                dt { "Profile" } dd { (meta.profile) }
                dt { "Content until" } dd { (meta.content_expires_at.map(when).unwrap_or_else(|| "never kept".into())) }
                dt { "Metadata until" } dd { (when(meta.expires_at)) }
                dt { "Item until" } dd { (when(item.expires_at)) @if shown.view.held { " (held)" } }
                dt { "Content" } dd #content-kind { (content.state()) }
                dt { "Key" } dd { code { (meta.key_id.0) } }
                dt { "Record id" } dd { code { (item.record_id) } }
                dt { "Policy" } dd { code { (meta.policy_version) } }
            }
        }
    }
}

fn verdicts(shown: &Shown) -> Markup {
    html! {
        section.card #verdicts {
            h2 { "Verdicts" }
            table {
                thead { tr { th { "Rule or category" } th { "Severity" } th { "Action" } th { "Why" } } }
                tbody {
                    @for v in &shown.item.verdicts {
                        tr {
                            td { (v.rule) }
                            td { (severity_badge(v.severity)) }
                            td { (v.action.as_str()) }
                            td { (v.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

fn notes(signed: &Signed, shown: &Shown) -> Markup {
    let notes = shown.notes();
    let list = notes.as_array().cloned().unwrap_or_default();
    let field =
        |n: &serde_json::Value, k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    html! {
        section.card #notes {
            h2 { "Notes" }
            @if list.is_empty() { p.muted { "No notes yet." } }
            @for n in &list {
                div.turn { div.role { (field(n, "author")) " · " (field(n, "at")) } pre.text { (field(n, "text")) } }
            }
            @if shown.item.status != "resolved" {
                form method="post" action={ "/console/items/" (shown.item.record_id) "/notes" } {
                    (csrf(signed))
                    textarea name="text" required maxlength="4000" data-key="n" placeholder="Add a note" {}
                    button type="submit" { "Add note" }
                }
            }
        }
    }
}

fn effect_text(effect: &ConfirmEffect) -> String {
    match effect {
        ConfirmEffect::Nothing => "Confirming suspends nothing (review.on_confirm = \"none\").".into(),
        ConfirmEffect::SuspendKey { tenant, key_id } => format!(
            "Confirming suspends the API key {key_id} of tenant {tenant}: its requests are refused until an operator lifts the suspension."
        ),
        ConfirmEffect::SuspendTenant { tenant } => format!(
            "Confirming suspends the whole tenant {tenant}: every request of it is refused until an operator lifts the suspension."
        ),
    }
}

fn actions(
    state: &ConsoleState,
    signed: &Signed,
    shown: &Shown,
    meta: &RecordMeta,
    assignees: &[crate::domain::access::Principal],
) -> Markup {
    let item = &shown.item;
    if item.status == "resolved" {
        return html! {
            section.card #decision { h2 { "Decision" } p { "Resolved: " b #resolution { (item.resolution.as_deref().unwrap_or("")) } } }
        };
    }
    let me = &signed.principal().name;
    let base = format!("/console/items/{}", item.record_id);
    let effect = effect_text(&state.desk.confirm_effect(item, &meta.key_id.0));
    let may = |action| state.desk.may(&signed.caller, action);
    html! {
        section.card #decision {
            h2 { "Decision" }
            p { "Assigned to " b #assignee { (item.assignee.as_deref().unwrap_or("nobody")) } }
            @if may(Action::AssignItem) {
                div.actions {
                    @if item.assignee.as_deref() != Some(me.as_str()) {
                        form method="post" action={ (base) "/assign" } {
                            (csrf(signed))
                            input type="hidden" name="assignee" value=(me);
                            button #claim type="submit" data-key="c" { "Claim (assign to me)" }
                        }
                    }
                    form method="post" action={ (base) "/assign" } {
                        (csrf(signed))
                        select name="assignee" aria-label="Assignee" {
                            @for p in assignees { option value=(p.name) selected[item.assignee.as_deref() == Some(p.name.as_str())] { (p.name) " (" (p.role.as_str()) ")" } }
                        }
                        button.plain type="submit" { "Assign" }
                    }
                }
            }
            @if may(Action::ResolveItem) {
                form #resolve method="post" action={ (base) "/resolve" } {
                    (csrf(signed))
                    p.notice.warn #confirm-effect { (effect) }
                    textarea name="note" maxlength="4000" placeholder="Why (optional, added as a note)" {}
                    div.actions {
                        button #dismiss.plain type="submit" name="resolution" value=(Resolution::Dismissed.as_str()) data-key="d" { "Dismiss" }
                        button #confirm.danger type="submit" name="resolution" value=(Resolution::Confirmed.as_str()) data-key="x" data-confirm={ (effect) " Confirm abuse?" } { "Confirm abuse" }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(in crate::console) struct AssignForm {
    assignee: String,
}

#[derive(Deserialize)]
pub(in crate::console) struct NoteForm {
    text: String,
}

#[derive(Deserialize)]
pub(in crate::console) struct ResolveForm {
    resolution: String,
    #[serde(default)]
    note: Option<String>,
}

/// Back to the item, saying what was done.
fn back(shown: &Shown, done: &str) -> Response {
    see_other(&format!(
        "/console/items/{}?done={done}",
        shown.item.record_id
    ))
}

pub(in crate::console) async fn assign(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    posted: Posted<AssignForm>,
) -> Response {
    match state
        .desk
        .assign(&posted.signed.caller, &id, &posted.form.assignee)
        .await
    {
        Ok(shown) => back(&shown, "assigned"),
        Err(e) => refused(e.into()),
    }
}

pub(in crate::console) async fn note(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    posted: Posted<NoteForm>,
) -> Response {
    match state
        .desk
        .note(&posted.signed.caller, &id, posted.form.text)
        .await
    {
        Ok(shown) => back(&shown, "noted"),
        Err(e) => refused(e.into()),
    }
}

pub(in crate::console) async fn resolve(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    posted: Posted<ResolveForm>,
) -> Response {
    let resolution = match Resolution::parse(&posted.form.resolution) {
        Ok(r) => r,
        Err(e) => return refused(e.into()),
    };
    let note = posted.form.note.filter(|n| !n.trim().is_empty());
    match state
        .desk
        .resolve(&posted.signed.caller, &id, resolution, note)
        .await
    {
        Ok(shown) => back(&shown, "resolved"),
        Err(e) => refused(e.into()),
    }
}
