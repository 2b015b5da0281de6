//! `[console]`: the reviewers' web console and its single sign-on, as validated.

use std::time::Duration;

use url::Url;

use super::Secret;

/// The reviewers' web console (`[console]`).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever its use.
    pub absolute_timeout: Duration,
    /// Mark cookies `Secure` (and `__Host-`): true unless the admin
    /// listener is on loopback, or as configured.
    pub secure_cookies: bool,
    /// Principals may sign in with their bearer token.
    pub token_sign_in: bool,
    pub oidc: Option<OidcConfig>,
}

/// Where the identity provider sends the browser back to, on the admin listener.
pub const OIDC_CALLBACK_PATH: &str = "/console/oidc/callback";

/// Single sign-on (`[console.oidc]`): the authorization code flow with PKCE.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as configured: the provider's metadata must name the same
    /// string (a trailing slash included or not).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: Url,
    /// Requested beyond `openid`.
    pub scopes: Vec<String>,
    /// The ID token (or userinfo) claim mapped to principals: a string or
    /// an array of strings (`email`, `groups`).
    pub claim: String,
    /// The sign-in button's label.
    pub display_name: String,
    /// Claim value → principal, first match wins.
    pub principals: Vec<ClaimMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    pub value: String,
    pub principal: String,
    /// The role the principal must have (checked at every sign-in).
    pub role: crate::domain::access::Role,
}
