//! The console's pages: the queue, an item, the audit log, principals and
//! tenants. Each handler asks the desk and renders what it answers; maud
//! escapes every value it inserts, so payload text is shown, never run.

pub(super) mod audit;
pub(super) mod item;
pub(super) mod principals;
pub(super) mod queue;
pub(super) mod tenants;

use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use time::OffsetDateTime;

use super::session::Signed;
use super::{page_shell, ConsoleState};
use crate::domain::verdict::Severity;
use crate::policy::access::Action;

/// The page `here` of a signed-in principal: navigation its role may use,
/// who is signed in, sign-out, and the keyboard help.
fn layout(
    state: &ConsoleState,
    signed: &Signed,
    here: &str,
    title: &str,
    body: Markup,
) -> Response {
    let may = |action| state.desk.may(&signed.caller, action);
    let links = [
        (
            "/console/",
            "Queue",
            may(Action::ListItems) || may(Action::Counts),
        ),
        ("/console/audit", "Audit", may(Action::ReadAudit)),
        ("/console/tenants", "Tenants", may(Action::ReadTenants)),
        (
            "/console/principals",
            "Principals",
            may(Action::ManagePrincipals),
        ),
    ];
    let principal = signed.principal();
    let page = page_shell(
        title,
        html! {},
        html! {
            header.top {
                a.brand href="/console/" { "Custodian" }
                nav {
                    @for (href, name, shown) in links {
                        @if shown {
                            a href=(href) class=[(href == here).then_some("here")] { (name) }
                        }
                    }
                }
                span.who { (principal.name) " · " (principal.role.as_str()) }
                form method="post" action="/console/logout" {
                    (csrf(signed))
                    button type="submit" { "Sign out" }
                }
            }
            main { (body) }
            div #keys hidden {
                b { "Keys" }
                p { kbd { "j" } " / " kbd { "k" } " next / previous  · " kbd { "Enter" } " / " kbd { "o" } " open  · " kbd { "u" } " queue" }
                p { kbd { "c" } " claim  · " kbd { "n" } " note  · " kbd { "d" } " dismiss  · " kbd { "x" } " confirm  · " kbd { "r" } " raw JSON" }
                p { kbd { "/" } " filter  · " kbd { "?" } " this help" }
            }
        },
    );
    Html(page.into_string()).into_response()
}

/// The hidden field every form of a session carries.
fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf); }
}

fn severity_badge(severity: Severity) -> Markup {
    html! { span class={ "badge sev-" (severity.as_str()) } { (severity.as_str()) } }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge st-" (status) } { (status) } }
}

/// An instant as people read it, in UTC.
fn when(t: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&format).unwrap_or_default()
}

/// How long ago, roughly.
fn ago(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3_599 => format!("{}m ago", secs / 60),
        3_600..=172_799 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// A date from a form (`YYYY-MM-DD`: the start of that day in UTC) or an
/// RFC 3339 instant, as the desk reads instants.
fn instant_field(value: Option<&str>) -> Option<String> {
    let value = value.map(str::trim).filter(|v| !v.is_empty())?;
    match form_date(value) {
        Some(day) => Some(format!("{day}T00:00:00Z")),
        None => Some(value.to_owned()),
    }
}

/// An end date from a form: the day given is included (up to the start of
/// the next one).
fn until_field(value: Option<&str>) -> Option<String> {
    let value = value.map(str::trim).filter(|v| !v.is_empty())?;
    match form_date(value).and_then(|day| day.next_day()) {
        Some(next) => Some(format!("{next}T00:00:00Z")),
        None => Some(value.to_owned()),
    }
}

fn form_date(value: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format).ok()
}

/// A query string of the non-empty pairs.
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

/// A notice for `?done=…` after a form post.
fn done_notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("assigned") => "Assigned.",
        Some("noted") => "Note added.",
        Some("resolved") => "Resolved.",
        Some("revoked") => "Principal revoked; its sessions have ended.",
        Some("empty") => "Nothing left to claim: the queue has no open item.",
        _ => return html! {},
    };
    html! { p.notice { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_dates_cover_whole_days() {
        assert_eq!(
            instant_field(Some("2026-12-07")).as_deref(),
            Some("2026-12-07T00:00:00Z")
        );
        assert_eq!(
            until_field(Some("2026-12-07")).as_deref(),
            Some("2026-12-08T00:00:00Z")
        );
        assert_eq!(
            until_field(Some("2026-12-31")).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        // Anything else goes to the desk as it is (which refuses what is not RFC 3339).
        assert_eq!(
            until_field(Some("2026-12-07T10:00:00Z")).as_deref(),
            Some("2026-12-07T10:00:00Z")
        );
        assert_eq!(instant_field(Some("  ")), None);
        assert_eq!(until_field(None), None);
    }
}
