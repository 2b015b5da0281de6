//! Signing in with a principal's bearer token (the fallback to single
//! sign-on), signing out, and the one place a session is opened. Sign-ins,
//! failures and sign-outs are audited.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use cookie::SameSite;
use http::request::Parts;
use http::{header, StatusCode};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::session::{self, Posted};
use super::{bare_page, see_other, ConsoleState};
use crate::domain::access::{token_hash, ConsoleSession, Principal};

/// Binds the sign-in form to the browser that loaded it (double submit).
const LOGIN_COOKIE: &str = "custodian_login";
const LOGIN_PATH: &str = "/console/login";

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    ended: Option<String>,
    signed_out: Option<String>,
}

pub(super) async fn page(
    State(state): State<ConsoleState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let notice = if query.ended.is_some() {
        Some("Your session ended. Sign in again.")
    } else if query.signed_out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    login_page(&state, StatusCode::OK, notice, None)
}

/// The sign-in page with a fresh form token.
pub(super) fn login_page(
    state: &ConsoleState,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let secure = state.config.secure_cookies;
    let form_token = session::random_token();
    let body = bare_page(
        "Sign in",
        html! {
            main.login {
                h1 { "Custodian review console" }
                @if let Some(n) = notice { p.notice { (n) } }
                @if let Some(e) = error { p.notice.error { (e) } }
                @if let Some(oidc) = &state.oidc {
                    p { a.button #sso href="/console/oidc/start" { "Sign in with " (oidc.display_name()) } }
                }
                @if state.config.token_sign_in {
                    form method="post" action=(LOGIN_PATH) {
                        input type="hidden" name="csrf" value=(form_token);
                        label for="token" { "Principal token" }
                        input #token type="password" name="token" autocomplete="off" placeholder="cstp_…" required;
                        button type="submit" { "Sign in with a token" }
                    }
                }
            }
        },
    );
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        form_token,
        LOGIN_PATH,
        SameSite::Strict,
        Some(time::Duration::hours(1)),
        secure,
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        Html(body.into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

pub(super) async fn with_token(
    State(state): State<ConsoleState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Response {
    if !state.config.token_sign_in {
        return super::error_page(&crate::http::error::ApiError::NotFound);
    }
    let source = session::peer(&parts);
    if !state.may_try_sign_in(&source) {
        return super::too_many_attempts();
    }
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            None,
            Some("The form was malformed."),
        );
    };
    let expected = session::read_cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            form.csrf.as_bytes(),
        ))
    {
        return session::csrf_refused();
    }
    match state.desk.principal_for_token(&form.token).await {
        Ok(principal) => {
            let via = "token".to_owned();
            open(&state, &parts.headers, &principal, via, source, json!({})).await
        }
        Err(crate::review::DeskError::Unauthenticated) => {
            audit_failure(
                &state,
                "anonymous".into(),
                source,
                json!({"via": "token", "reason": "unknown_or_inactive_token"}),
            )
            .await;
            login_page(
                &state,
                StatusCode::UNAUTHORIZED,
                None,
                Some("That token is not an active principal's."),
            )
        }
        Err(e) => super::refused(e.into()),
    }
}

/// Open a session for `principal` (audited as `console.signed_in`), set
/// its cookie and go to the console (or the page saying why not).
pub(super) async fn open(
    state: &ConsoleState,
    headers: &http::HeaderMap,
    principal: &Principal,
    via: String,
    source: String,
    mut details: serde_json::Value,
) -> Response {
    let now = state.desk.now();
    let secure = state.config.secure_cookies;
    // A browser signing in again leaves no session of its own behind.
    if let Some(previous) = session::read_cookie(headers, session::cookie_name(secure)) {
        if let Err(e) = state
            .desk
            .store()
            .end_session(&token_hash(&previous), now, None)
            .await
        {
            tracing::warn!(error = %e, "could not end the session a sign-in replaces");
        }
    }
    let absolute = time::Duration::try_from(state.config.absolute_timeout)
        .unwrap_or(time::Duration::hours(12));
    let cookie = session::random_token();
    let session = ConsoleSession {
        id_hash: token_hash(&cookie),
        principal_id: principal.id,
        via: via.clone(),
        created_at: now,
        last_seen_at: now,
        // Never past the principal's own expiry (a contractor's access ends there).
        expires_at: principal
            .expires_at
            .map_or(now + absolute, |e| e.min(now + absolute)),
        ended_at: None,
    };
    if let Some(map) = details.as_object_mut() {
        map.insert("via".into(), json!(via));
    }
    let event = state.sign_in_event(
        format!("principal:{}", principal.name),
        "console.signed_in",
        source,
        details,
    );
    if let Err(e) = state.desk.store().open_session(&session, &event).await {
        return super::refused(crate::review::DeskError::from(e).into());
    }
    let set = session::set_cookie(
        session::cookie_name(secure),
        cookie,
        session::cookie_path(secure),
        SameSite::Strict,
        None,
        secure,
    );
    let cleared = session::clear_cookie(LOGIN_COOKIE, LOGIN_PATH, secure);
    // A page that moves on by itself rather than a redirect: after a
    // cross-site sign-in (the identity provider's), the browser would not
    // send a SameSite=Strict cookie on a redirect, but does on a navigation
    // this page starts.
    let body = super::page_shell(
        "Signed in",
        html! { meta http-equiv="refresh" content="0;url=/console/"; },
        html! { main.login { p { "Signed in as " (principal.name) ". " a href="/console/" { "Continue" } } } },
    );
    // Appended: a header array would keep only the last Set-Cookie.
    let cookies =
        axum::response::AppendHeaders([(header::SET_COOKIE, set), (header::SET_COOKIE, cleared)]);
    (StatusCode::OK, cookies, Html(body.into_string())).into_response()
}

/// Audit a refused sign-in; a store that cannot take it is logged.
pub(super) async fn audit_failure(
    state: &ConsoleState,
    actor: String,
    source: String,
    details: serde_json::Value,
) {
    let event = state.sign_in_event(actor, "console.sign_in_failed", source, details);
    if let Err(e) = state.desk.store().append_audit(&event).await {
        tracing::error!(error = %e, "could not audit a failed console sign-in");
    }
}

#[derive(Deserialize)]
pub(super) struct Empty {}

pub(super) async fn sign_out(State(state): State<ConsoleState>, posted: Posted<Empty>) -> Response {
    let signed = posted.signed;
    let event = state
        .desk
        .audit_event(&signed.caller, "console.signed_out", None, json!({}));
    let ended = state
        .desk
        .store()
        .end_session(&signed.session_hash, state.desk.now(), Some(&event))
        .await;
    if let Err(e) = ended {
        return super::refused(crate::review::DeskError::from(e).into());
    }
    let secure = state.config.secure_cookies;
    let name = session::cookie_name(secure);
    let cleared = session::clear_cookie(name, session::cookie_path(secure), secure);
    let mut response = see_other("/console/login?signed_out=1");
    if let Ok(v) = cleared.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
