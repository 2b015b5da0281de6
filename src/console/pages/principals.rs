//! Principals (admins): list, add (the new token shown once), revoke.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::*;
use crate::console::session::Posted;
use crate::console::{refused, see_other};
use crate::domain::access::Role;

#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct PrincipalsQuery {
    done: Option<String>,
}

pub(in crate::console) async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
    query: Result<Query<PrincipalsQuery>, QueryRejection>,
) -> Response {
    let done = query.ok().and_then(|q| q.0.done);
    render(&state, &signed, done.as_deref(), None).await
}

/// The page, with a new principal's token when one was just added.
async fn render(
    state: &ConsoleState,
    signed: &Signed,
    done: Option<&str>,
    added: Option<(&str, &str)>,
) -> Response {
    let principals = match state.desk.principals(&signed.caller).await {
        Ok(p) => p,
        Err(e) => return refused(e.into()),
    };
    let now = state.desk.now();
    let body = html! {
        h1 { "Principals" }
        (done_notice(done))
        @if let Some((name, token)) = added {
            div.notice #new-token {
                p { "Principal " b { (name) } " added. Its token is shown this once; only its hash is kept:" }
                p.token { (token) }
            }
        }
        table #principals {
            thead { tr { th { "Name" } th { "Role" } th { "State" } th { "Expires" } th { "Created" } th {} } }
            tbody {
                @for p in &principals {
                    @let state_name = p.state(now);
                    tr {
                        td { (p.name) }
                        td { (p.role.as_str()) }
                        td { (state_name) }
                        td { (p.expires_at.map(when).unwrap_or_else(|| "never".into())) }
                        td { (when(p.created_at)) }
                        td {
                            @if state_name == "active" && p.name != signed.principal().name {
                                form method="post" action="/console/principals/revoke" {
                                    (csrf(signed))
                                    input type="hidden" name="name" value=(p.name);
                                    button.danger type="submit" data-confirm={ "Revoke " (p.name) "? Its sessions end at once." } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a principal" }
        form.filters.card method="post" action="/console/principals" {
            (csrf(signed))
            label { "Name" input name="name" required maxlength="100"; }
            label { "Role"
                select name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } } }
            }
            label { "Expires (optional)" input type="date" name="expires"; }
            button type="submit" { "Add" }
        }
    };
    layout(state, signed, "/console/principals", "Principals", body)
}

#[derive(Deserialize)]
pub(in crate::console) struct AddForm {
    name: String,
    role: String,
    #[serde(default)]
    expires: Option<String>,
}

pub(in crate::console) async fn add(
    State(state): State<ConsoleState>,
    posted: Posted<AddForm>,
) -> Response {
    let Posted { signed, form } = posted;
    let Some(role) = Role::parse(&form.role) else {
        return refused(crate::http::error::ApiError::InvalidRequest(
            "no such role".into(),
        ));
    };
    let expires = match crate::review::desk::instant_param(
        "expires",
        instant_field(form.expires.as_deref()).as_deref(),
    ) {
        Ok(e) => e,
        Err(e) => return refused(e.into()),
    };
    match state
        .desk
        .add_principal(&signed.caller, &form.name, role, expires)
        .await
    {
        // Shown in the answer to the post itself: the token never sits in an address.
        Ok(token) => render(&state, &signed, None, Some((form.name.trim(), &token))).await,
        Err(e) => refused(e.into()),
    }
}

#[derive(Deserialize)]
pub(in crate::console) struct RevokeForm {
    name: String,
}

pub(in crate::console) async fn revoke(
    State(state): State<ConsoleState>,
    posted: Posted<RevokeForm>,
) -> Response {
    match state
        .desk
        .revoke_principal(&posted.signed.caller, &posted.form.name)
        .await
    {
        Ok(()) => see_other("/console/principals?done=revoked"),
        Err(e) => refused(e.into()),
    }
}
