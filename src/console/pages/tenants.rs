//! Tenants, read-only: the training tag a request would get now on each
//! route, the consent history behind it, legal holds and suspensions.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::*;
use crate::console::refused;

pub(in crate::console) async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Response {
    let tenants = match state.desk.tenants(&signed.caller).await {
        Ok(t) => t,
        Err(e) => return refused(e.into()),
    };
    let now = state.desk.now();
    let body = html! {
        h1 { "Tenants" }
        @for t in &tenants {
            section.card id={ "tenant-" (t.id.0) } {
                h2 { (t.id.0) @if t.zero_data_retention { " " span.badge { "zero data retention" } } }
                table.tags {
                    thead { tr { th { "Route" } th { "Profile" } th { "Training now" } th { "Basis" } } }
                    tbody {
                        @for r in &t.routes {
                            tr { td { (r.route) } td { (r.profile) } td { @if r.tag.usable { span.ok { "allowed" } } @else { "denied" } } td { (r.tag.basis.as_str()) } }
                        }
                    }
                }
                h3 { "Consent history" }
                @if t.consent.is_empty() { p.muted { "No consent recorded: the profile's default applies." } }
                @else {
                    table {
                        thead { tr { th { "Recorded" } th { "Effective" } th { "Choice" } th { "By" } th { "Via" } th { "Note" } } }
                        tbody {
                            @for c in &t.consent {
                                tr {
                                    td { (when(c.recorded_at)) } td { (when(c.effective_at)) }
                                    td { @if c.opted_in { "opted in" } @else { "opted out" } }
                                    td { (c.actor) } td { (c.source) } td { (c.note.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                h3 { "Legal holds" }
                @if t.holds.is_empty() { p.muted { "None." } }
                @for h in &t.holds {
                    p {
                        "#" (h.id) " " (h.reason) " — " (h.record.map(|r| r.to_string()).unwrap_or_else(|| "every record".into()))
                        ", until " (when(h.ends_at))
                        @if h.is_active(now) { " " span.badge.held { "active" } } @else { " (ended)" }
                    }
                }
                h3 { "Suspensions" }
                @if t.suspensions.is_empty() { p.muted { "None." } }
                @for s in &t.suspensions {
                    p {
                        "#" (s.id) " " (s.key_id.as_deref().map(|k| format!("key {k}")).unwrap_or_else(|| "whole tenant".into()))
                        " — " (s.reason) " (" (s.created_by) ", " (when(s.created_at)) ")"
                        @if s.lifted_at.is_some() { " lifted" } @else { " " span.badge.sev-critical { "in force" } }
                    }
                }
            }
        }
    };
    layout(&state, &signed, "/console/tenants", "Tenants", body)
}
