//! The reviewers' web console, at `/console/` on the admin listener (never
//! the proxy listener): server-rendered HTML over the review desk
//! (`review::desk`), which decides every access exactly as it does for the
//! admin API. This module only authenticates (sessions, token or OpenID
//! Connect sign-in) and renders.
//!
//! Every console route passes, in order:
//! 1. `headers` (on the way out): a strict Content-Security-Policy (no
//!    inline script or style), no framing, no referrer, no caching of pages;
//! 2. `guard`: a state-changing request whose `Origin` or `Sec-Fetch-Site`
//!    says another site sent it is refused (403) before anything reads it;
//! 3. the handler: [`session::Signed`] resolves the session cookie to an
//!    active principal (or sends the browser to sign in), and
//!    [`session::Posted`] adds the CSRF token check every form post needs.
//!    Sign-in attempts are bounded per address and minute.

mod oidc;
mod pages;
mod session;
mod sign_in;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use maud::{html, Markup, DOCTYPE};

use crate::abuse::rate::RateCounter;
use crate::config::ConsoleConfig;
use crate::domain::audit::AuditEvent;
use crate::http::error::ApiError;
use crate::review::Desk;

pub use oidc::Provider;

#[derive(Clone)]
pub struct ConsoleState {
    desk: Desk,
    config: Arc<ConsoleConfig>,
    /// Single sign-on, when `[console.oidc]` is configured.
    oidc: Option<Arc<Provider>>,
    /// Sign-in attempts per peer address and minute.
    sign_in_attempts: Arc<RateCounter>,
}

/// Sign-in attempts (token posts, single sign-on starts and callbacks) one
/// address may make in a minute; more are answered 429.
const SIGN_INS_PER_MINUTE: u64 = 30;

impl ConsoleState {
    pub fn new(desk: Desk, config: ConsoleConfig) -> Result<Self, openidconnect::reqwest::Error> {
        let oidc = config
            .oidc
            .clone()
            .map(Provider::new)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            desk,
            config: Arc::new(config),
            oidc,
            sign_in_attempts: Arc::new(RateCounter::default()),
        })
    }

    /// Whether `peer` may try to sign in again this minute (unauthenticated
    /// requests that write to the store or the audit log are bounded).
    fn may_try_sign_in(&self, peer: &str) -> bool {
        let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip);
        self.sign_in_attempts
            .hit(ip, self.desk.now().unix_timestamp())
            <= SIGN_INS_PER_MINUTE
    }

    /// An audit entry for a sign-in event (no principal acting yet).
    fn sign_in_event(
        &self,
        actor: String,
        action: &str,
        source: String,
        details: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            at: self.desk.now(),
            actor,
            action: action.into(),
            tenant: None,
            subject: None,
            source,
            details,
        }
    }
}

pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(pages::queue::page))
        .route("/console/claim", post(pages::queue::claim_next))
        .route("/console/items/{id}", get(pages::item::page))
        .route("/console/items/{id}/assign", post(pages::item::assign))
        .route("/console/items/{id}/notes", post(pages::item::note))
        .route("/console/items/{id}/resolve", post(pages::item::resolve))
        .route("/console/audit", get(pages::audit::page))
        .route("/console/audit/verify", get(pages::audit::verify))
        .route(
            "/console/principals",
            get(pages::principals::page).post(pages::principals::add),
        )
        .route(
            "/console/principals/revoke",
            post(pages::principals::revoke),
        )
        .route("/console/tenants", get(pages::tenants::page))
        .route(
            "/console/login",
            get(sign_in::page).post(sign_in::with_token),
        )
        .route("/console/logout", post(sign_in::sign_out))
        .route("/console/oidc/start", get(oidc::start))
        .route(crate::config::OIDC_CALLBACK_PATH, get(oidc::callback))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route(
            "/console/{*rest}",
            any(|| async { error_page(&ApiError::NotFound) }),
        )
        // `headers` outermost: the guard's refusals carry them too.
        .layer(middleware::from_fn(guard))
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// Refuse a state-changing request another site sent (defence in depth
/// beside the CSRF token and `SameSite=Strict`).
async fn guard(request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !same_origin(request.headers()) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Refused: this request was sent by another site.",
        );
    }
    next.run(request).await
}

/// Whether the browser says the request comes from this origin: its
/// `Sec-Fetch-Site`, else its `Origin` against the `Host` it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let value = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = value("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (value("origin"), value("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Pages show payloads and tokens: never kept by a cache.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A page around `body`, without the signed-in navigation (sign-in, errors).
fn bare_page(title: &str, body: Markup) -> Markup {
    page_shell(title, html! {}, body)
}

/// The document around `body`, with more in its head.
fn page_shell(title: &str, head: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Custodian" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
                (head)
            }
            body { (body) }
        }
    }
}

/// An error as a page, with the status the API would answer.
fn error_page(e: &ApiError) -> Response {
    message_page(e.status(), &e.to_string())
}

/// A page that says `message`, with `status`.
fn message_page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = bare_page(
        reason,
        html! {
            main.login {
                h1 { (status.as_u16()) " " (reason) }
                p.notice.error { (message) }
                p { a href="/console/" { "Back to the console" } }
            }
        },
    );
    (status, Html(body.into_string())).into_response()
}

/// Where a failed desk call leads: the sign-in page when the caller's
/// principal ended meanwhile, otherwise its error page.
fn refused(e: ApiError) -> Response {
    match e {
        ApiError::UnknownKey => Redirect::to("/console/login?ended=1").into_response(),
        e => error_page(&e),
    }
}

/// Too many sign-in attempts from one address this minute.
fn too_many_attempts() -> Response {
    let mut page = message_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts from your address. Wait a minute and try again.",
    );
    page.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    page
}

/// A successful form post: back to a page (303, so a reload does not post again).
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
