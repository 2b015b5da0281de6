//! Console sessions: a random cookie whose hash names a row in the store
//! (`SessionStore`), checked on every request against its idle and absolute
//! timeouts and its principal's expiry and revocation, so a session ends
//! the moment any of them does. The CSRF token every form carries is an
//! HMAC of the session cookie: only a page the session itself loaded can
//! know it, and nothing more is stored.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;

use super::{error_page, message_page, ConsoleState};
use crate::domain::access::{token_hash, ConsoleSession, Principal};
use crate::http::error::ApiError;
use crate::review::Caller;

/// A session's activity is written at most this often (a page view
/// within it does not write).
const TOUCH_AFTER: time::Duration = time::Duration::seconds(30);
/// Largest form body the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The session cookie's name: `__Host-` when `Secure`, so that no other
/// host or path can set it.
pub(super) fn cookie_name(secure: bool) -> &'static str {
    match secure {
        true => "__Host-custodian_session",
        false => "custodian_session",
    }
}

/// The session cookie's path: `/` as `__Host-` requires; otherwise only the
/// console's paths, so that the cookie never goes with a request to the
/// proxy listener on the same host (cookies ignore ports).
pub(super) fn cookie_path(secure: bool) -> &'static str {
    match secure {
        true => "/",
        false => "/console",
    }
}

/// A new random value for a cookie (256 bits, hex).
pub(super) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A cookie as the console sets them: `HttpOnly`, `Secure` unless the
/// listener is loopback.
pub(super) fn set_cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    same_site: SameSite,
    max_age: Option<time::Duration>,
    secure: bool,
) -> String {
    let mut c = Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .secure(secure)
        .same_site(same_site);
    if let Some(age) = max_age {
        c = c.max_age(age);
    }
    c.build().to_string()
}

/// A `Set-Cookie` that removes `name`.
pub(super) fn clear_cookie(name: &'static str, path: &'static str, secure: bool) -> String {
    set_cookie(
        name,
        String::new(),
        path,
        SameSite::Strict,
        Some(time::Duration::ZERO),
        secure,
    )
}

/// The value of cookie `name` in the request, if it sent one.
pub(super) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The token forms of this session carry.
pub(super) fn csrf_token(session_cookie: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(session_cookie.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"custodian console csrf v1");
    hex::encode(mac.finalize().into_bytes())
}

/// The session's token against the one a form carried, in constant time.
fn csrf_matches(expected: &str, sent: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        sent.as_bytes(),
    ))
}

/// The peer address, for the audit log.
pub(super) fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

/// A signed-in request: its caller and the CSRF token its forms carry.
pub struct Signed {
    pub caller: Caller,
    pub csrf: String,
    /// The session's hash (sign-out ends it).
    pub session_hash: String,
}

impl Signed {
    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Response> {
        let secure = state.config.secure_cookies;
        let cookie = read_cookie(&parts.headers, cookie_name(secure))
            .filter(|c| !c.is_empty())
            .ok_or_else(to_sign_in)?;
        let session_hash = token_hash(&cookie);
        let store = state.desk.store();
        let (session, principal) = store
            .session(&session_hash)
            .await
            .map_err(|e| super::refused(crate::review::DeskError::from(e).into()))?
            .ok_or_else(to_sign_in)?;
        let now = state.desk.now();
        if !live(&session, &principal, now, state) {
            if session.ended_at.is_none() {
                if let Err(e) = store.end_session(&session_hash, now, None).await {
                    tracing::warn!(error = %e, "could not end a timed-out console session");
                }
            }
            return Err(Redirect::to("/console/login?ended=1").into_response());
        }
        if now - session.last_seen_at >= TOUCH_AFTER {
            if let Err(e) = store.touch_session(&session_hash, now).await {
                tracing::warn!(error = %e, "could not note a console session's activity");
            }
        }
        Ok(Self {
            caller: Caller {
                principal,
                source: peer(parts),
                via: Some(session.via),
            },
            csrf: csrf_token(&cookie),
            session_hash,
        })
    }
}

/// Live: the session within both timeouts, its principal active.
fn live(
    session: &ConsoleSession,
    principal: &Principal,
    now: time::OffsetDateTime,
    state: &ConsoleState,
) -> bool {
    let idle = time::Duration::try_from(state.config.idle_timeout).unwrap_or(time::Duration::ZERO);
    session.is_live(now, idle) && principal.is_active(now)
}

fn to_sign_in() -> Response {
    Redirect::to("/console/login").into_response()
}

/// A form posted by a signed-in page, its CSRF token checked (403 without
/// the session's token). Every state-changing console route takes one.
pub struct Posted<T> {
    pub signed: Signed,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<ConsoleState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                error_page(&ApiError::PayloadTooLarge {
                    limit: MAX_FORM_BYTES,
                })
            })?;
        let token = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .map(|f| f.csrf)
            .unwrap_or_default();
        if !csrf_matches(&signed.csrf, &token) {
            return Err(csrf_refused());
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| error_page(&ApiError::InvalidRequest(format!("bad form: {e}"))))?;
        Ok(Self { signed, form })
    }
}

pub(super) fn csrf_refused() -> Response {
    message_page(
        http::StatusCode::FORBIDDEN,
        "This form did not come from your console session (its CSRF token is missing or wrong). \
         Reload the page and try again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert!(csrf_matches(&csrf_token(&a), &csrf_token(&a)));
        assert!(!csrf_matches(&csrf_token(&b), &csrf_token(&a)));
        assert!(!csrf_matches(&csrf_token(&a), ""));
        assert!(!csrf_matches(&csrf_token(&a), &csrf_token(&a)[..10]));
        // Nothing of the token gives the session (or its stored hash) away.
        assert_ne!(csrf_token(&a), token_hash(&a));
        assert!(!csrf_token(&a).contains(&a));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_off_loopback() {
        let c = set_cookie("n", "v".into(), "/", SameSite::Strict, None, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        let c = set_cookie("n", "v".into(), "/", SameSite::Strict, None, false);
        assert!(!c.contains("Secure"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; custodian_session=xyz; b=2"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            read_cookie(&headers, "custodian_session").as_deref(),
            Some("xyz")
        );
        assert_eq!(read_cookie(&headers, "missing"), None);
    }
}
