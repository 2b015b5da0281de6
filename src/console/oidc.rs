//! Single sign-on through the company's OpenID provider: the authorization
//! code flow with PKCE (`openidconnect`). The state, nonce and PKCE
//! verifier of a sign-in wait in the store, bound to the browser that
//! started it by a cookie, and are taken once by the callback. The ID
//! token's signature, issuer, audience, expiry (on the gateway's clock)
//! and nonce are checked; then one claim (`email`, `groups`, …) is mapped
//! to a configured principal, whose role must be the one the mapping names
//! and whose expiry and revocation still apply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use cookie::SameSite;
use http::request::Parts;
use http::{header, StatusCode};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::session;
use super::{see_other, sign_in, ConsoleState};
use crate::config::OidcConfig;
use crate::domain::access::token_hash;
use crate::store::PendingSignIn;

/// Binds a sign-in under way to the browser that started it. `Lax`: the
/// identity provider's redirect back is a cross-site navigation.
const SIGN_IN_COOKIE: &str = "custodian_oidc";
const SIGN_IN_PATH: &str = "/console/oidc";
/// How long a sign-in may take at the identity provider.
const SIGN_IN_TTL: time::Duration = time::Duration::minutes(10);
/// The provider's metadata and keys are fetched again after this long (or
/// at once when a token names a key they lack).
const DISCOVERY_TTL: Duration = Duration::from_secs(3_600);
const REDISCOVERY_AFTER: Duration = Duration::from_secs(60);

type SsoClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Every claim the token carries beyond the standard ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims {
    #[serde(flatten)]
    all: BTreeMap<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

type SsoIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The configured provider, discovered when first needed (the gateway
/// starts even when the identity provider is down).
pub struct Provider {
    config: OidcConfig,
    http: openidconnect::reqwest::Client,
    discovered: tokio::sync::Mutex<Option<(Instant, Arc<SsoClient>)>>,
}

/// Why a sign-in was refused: a code (in the audit entry) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    ProviderUnreachable,
    StoreUnavailable,
    /// A callback without the cookie of a sign-in started in this browser
    /// (not audited: anyone can send one).
    NotStartedHere,
    NoSignInUnderWay,
    StateMismatch,
    ProviderRefused,
    TokenExchange,
    WrongAudience,
    WrongIssuer,
    NonceMismatch,
    Expired,
    BadSignature,
    InvalidToken,
    NoClaim,
    /// The mapped claim is `email` and the provider does not vouch for it.
    EmailUnverified,
    NoMapping,
    UnknownPrincipal,
    PrincipalInactive,
    RoleMismatch,
}

impl Failure {
    fn code(self) -> &'static str {
        match self {
            Self::ProviderUnreachable => "provider_unreachable",
            Self::StoreUnavailable => "store_unavailable",
            Self::NotStartedHere => "not_started_here",
            Self::NoSignInUnderWay => "no_sign_in_under_way",
            Self::StateMismatch => "state_mismatch",
            Self::ProviderRefused => "provider_refused",
            Self::TokenExchange => "token_exchange_failed",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::NonceMismatch => "nonce_mismatch",
            Self::Expired => "token_expired",
            Self::BadSignature => "bad_signature",
            Self::InvalidToken => "invalid_token",
            Self::NoClaim => "claim_missing",
            Self::EmailUnverified => "email_unverified",
            Self::NoMapping => "no_access",
            Self::UnknownPrincipal => "unknown_principal",
            Self::PrincipalInactive => "principal_inactive",
            Self::RoleMismatch => "role_mismatch",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::ProviderUnreachable => {
                "The identity provider could not be reached. Try again shortly."
            }
            Self::StoreUnavailable => "The gateway's store is unavailable; try again shortly.",
            Self::NotStartedHere | Self::NoSignInUnderWay | Self::StateMismatch => {
                "This sign-in was not started here, was used already or took too long. Start again."
            }
            Self::ProviderRefused => "The identity provider did not sign you in.",
            Self::TokenExchange => "The identity provider's answer could not be used. Start again.",
            Self::WrongAudience
            | Self::WrongIssuer
            | Self::NonceMismatch
            | Self::Expired
            | Self::BadSignature
            | Self::InvalidToken => "The identity provider's token was refused. Start again.",
            Self::NoClaim | Self::EmailUnverified | Self::NoMapping => {
                "Your account has no access to this console."
            }
            Self::UnknownPrincipal | Self::RoleMismatch => {
                "Your account maps to no usable principal. Ask an administrator."
            }
            Self::PrincipalInactive => "Your access to this console has ended.",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::ProviderUnreachable | Self::TokenExchange => StatusCode::BAD_GATEWAY,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoClaim
            | Self::EmailUnverified
            | Self::NoMapping
            | Self::UnknownPrincipal
            | Self::RoleMismatch => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl Provider {
    pub fn new(config: OidcConfig) -> Result<Self, openidconnect::reqwest::Error> {
        // No redirects (the crate's advice against SSRF), bounded waits.
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            config,
            http,
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    /// The client, discovered again when it is old, or when `fresh` and it
    /// is more than a minute old (a token naming a key the provider rotated
    /// in; a flood of bad tokens cannot make the gateway rediscover at will).
    /// One discovery at a time: the others wait for its answer.
    async fn client(&self, fresh: bool) -> Result<Arc<SsoClient>, String> {
        let mut cached = self.discovered.lock().await;
        if let Some((at, client)) = cached.as_ref() {
            let age = at.elapsed();
            if age < DISCOVERY_TTL && !(fresh && age > REDISCOVERY_AFTER) {
                return Ok(Arc::clone(client));
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| e.to_string())?;
        let redirect =
            RedirectUrl::new(self.config.redirect_url.to_string()).map_err(|e| e.to_string())?;
        let client = Arc::new(
            CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(self.config.client_id.clone()),
                Some(ClientSecret::new(
                    self.config.client_secret.expose().to_owned(),
                )),
            )
            .set_redirect_uri(redirect),
        );
        *cached = Some((Instant::now(), Arc::clone(&client)));
        Ok(client)
    }
}

/// `GET /console/oidc/start`: off to the identity provider.
pub(super) async fn start(State(state): State<ConsoleState>, parts: Parts) -> Response {
    let Some(provider) = state.oidc.clone() else {
        return super::error_page(&crate::http::error::ApiError::NotFound);
    };
    if !state.may_try_sign_in(&session::peer(&parts)) {
        return super::too_many_attempts();
    }
    let client = match provider.client(false).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID provider discovery failed");
            return refuse(&state, &parts, Failure::ProviderUnreachable, None).await;
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for scope in &provider.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
    let cookie = session::random_token();
    let now = state.desk.now();
    let pending = PendingSignIn {
        id_hash: token_hash(&cookie),
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        created_at: now,
        expires_at: now + SIGN_IN_TTL,
    };
    if let Err(e) = state.desk.store().begin_sign_in(&pending).await {
        return super::refused(crate::review::DeskError::from(e).into());
    }
    let secure = state.config.secure_cookies;
    let set = session::set_cookie(
        SIGN_IN_COOKIE,
        cookie,
        SIGN_IN_PATH,
        SameSite::Lax,
        Some(SIGN_IN_TTL),
        secure,
    );
    let mut response = see_other(url.as_str());
    if let Ok(v) = set.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/oidc/callback`: the provider sends the browser back.
pub(super) async fn callback(
    State(state): State<ConsoleState>,
    parts: Parts,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let Some(provider) = state.oidc.clone() else {
        return super::error_page(&crate::http::error::ApiError::NotFound);
    };
    if !state.may_try_sign_in(&session::peer(&parts)) {
        return super::too_many_attempts();
    }
    let query = query.map(|q| q.0).unwrap_or_default();
    match verify(&state, &provider, &parts, query).await {
        Ok(Verified {
            principal,
            subject,
            value,
        }) => {
            let via = format!("oidc:{subject}");
            let details =
                json!({"subject": subject, "claim": provider.config.claim, "value": value});
            let source = session::peer(&parts);
            let mut response =
                sign_in::open(&state, &parts.headers, &principal, via, source, details).await;
            clear_sign_in_cookie(&state, &mut response);
            response
        }
        Err((failure, subject)) => refuse(&state, &parts, failure, subject).await,
    }
}

struct Verified {
    principal: crate::domain::access::Principal,
    subject: String,
    value: String,
}

type Refusal = (Failure, Option<String>);

/// Everything the callback checks, in order.
async fn verify(
    state: &ConsoleState,
    provider: &Provider,
    parts: &Parts,
    query: Callback,
) -> Result<Verified, Refusal> {
    let (pending, code) = take_pending(state, parts, query).await?;
    let client = provider
        .client(false)
        .await
        .map_err(|_| (Failure::ProviderUnreachable, None))?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|_| (Failure::TokenExchange, None))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&provider.http)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "OpenID token exchange failed");
            (Failure::TokenExchange, None)
        })?;
    let id_token: SsoIdToken = tokens
        .id_token()
        .ok_or((Failure::InvalidToken, None))?
        .to_string()
        .parse()
        .map_err(|_| (Failure::InvalidToken, None))?;
    let nonce = Nonce::new(pending.nonce);
    let (client, claims) = match checked_claims(state, &client, &id_token, &nonce) {
        // A key the cached metadata lacks: the provider rotated its keys.
        Err(Failure::BadSignature) => {
            let fresh = provider
                .client(true)
                .await
                .map_err(|_| (Failure::ProviderUnreachable, None))?;
            let claims = checked_claims(state, &fresh, &id_token, &nonce).map_err(|f| (f, None))?;
            (fresh, claims)
        }
        other => (client, other.map_err(|f| (f, None))?),
    };
    let subject = claims.subject().to_string();
    let found = match mapped_claim(
        claims.additional_claims(),
        claims.email(),
        claims.email_verified(),
        &provider.config.claim,
    ) {
        Found::Nothing => {
            let token = tokens.access_token().clone();
            user_info_claim(provider, &client, token, claims.subject().clone()).await
        }
        found => found,
    };
    principal_for(state, provider, found, subject).await
}

/// The sign-in this browser started (taken: a replay finds nothing), its
/// state checked, and the code the provider sent.
async fn take_pending(
    state: &ConsoleState,
    parts: &Parts,
    query: Callback,
) -> Result<(PendingSignIn, String), Refusal> {
    let cookie = session::read_cookie(&parts.headers, SIGN_IN_COOKIE)
        .ok_or((Failure::NotStartedHere, None))?;
    let pending = state
        .desk
        .store()
        .take_sign_in(&token_hash(&cookie), state.desk.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read a sign-in under way");
            (Failure::StoreUnavailable, None)
        })?
        .ok_or((Failure::NoSignInUnderWay, None))?;
    let returned = query.state.unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        returned.as_bytes(),
        pending.state.as_bytes(),
    )) {
        return Err((Failure::StateMismatch, None));
    }
    if query.error.is_some() {
        return Err((Failure::ProviderRefused, None));
    }
    let code = query.code.ok_or((Failure::ProviderRefused, None))?;
    Ok((pending, code))
}

/// The principal the claim maps to: first mapping in the file's order, a
/// principal with the role the mapping names, still active.
async fn principal_for(
    state: &ConsoleState,
    provider: &Provider,
    found: Found,
    subject: String,
) -> Result<Verified, Refusal> {
    let refused = |f| (f, Some(subject.clone()));
    let values = match found {
        Found::Values(values) => values,
        Found::Unverified => return Err(refused(Failure::EmailUnverified)),
        Found::Nothing => return Err(refused(Failure::NoClaim)),
    };
    let mapping = provider
        .config
        .principals
        .iter()
        .find(|m| values.contains(&m.value))
        .ok_or_else(|| refused(Failure::NoMapping))?;
    let principal = state
        .desk
        .store()
        .list_principals()
        .await
        .map_err(|_| refused(Failure::StoreUnavailable))?
        .into_iter()
        .find(|p| p.name == mapping.principal)
        .ok_or_else(|| refused(Failure::UnknownPrincipal))?;
    if principal.role != mapping.role {
        return Err(refused(Failure::RoleMismatch));
    }
    if !principal.is_active(state.desk.now()) {
        return Err(refused(Failure::PrincipalInactive));
    }
    Ok(Verified {
        principal,
        value: mapping.value.clone(),
        subject,
    })
}

type SsoClaims = openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>;

/// The token's claims once its signature, issuer, audience, expiry (on the
/// gateway's clock) and nonce are checked.
fn checked_claims(
    state: &ConsoleState,
    client: &SsoClient,
    id_token: &SsoIdToken,
    nonce: &Nonce,
) -> Result<SsoClaims, Failure> {
    let desk = state.desk.clone();
    let verifier = client.id_token_verifier().set_time_fn(move || {
        let now = desk.now();
        chrono::DateTime::from_timestamp(now.unix_timestamp(), now.nanosecond()).unwrap_or_default()
    });
    match id_token.claims(&verifier, nonce) {
        Ok(claims) => Ok(claims.clone()),
        Err(e) => {
            tracing::warn!(error = %e, "an ID token was refused");
            Err(match e {
                ClaimsVerificationError::InvalidAudience(_) => Failure::WrongAudience,
                ClaimsVerificationError::InvalidIssuer(_) => Failure::WrongIssuer,
                ClaimsVerificationError::InvalidNonce(_) => Failure::NonceMismatch,
                ClaimsVerificationError::Expired(_) => Failure::Expired,
                ClaimsVerificationError::SignatureVerification(_) => Failure::BadSignature,
                _ => Failure::InvalidToken,
            })
        }
    }
}

/// What a token's or userinfo's claims say of the mapped claim.
enum Found {
    Values(Vec<String>),
    /// The claim is `email` and the provider does not say it verified it.
    Unverified,
    Nothing,
}

/// The mapped claim's values: a string, or an array of strings. An e-mail
/// address counts only when the provider vouches for it (`email_verified`):
/// some providers let users set it to anyone's.
fn mapped_claim(
    other: &OtherClaims,
    email: Option<&openidconnect::EndUserEmail>,
    email_verified: Option<bool>,
    name: &str,
) -> Found {
    if name == "email" {
        return match (email, email_verified) {
            (Some(email), Some(true)) => Found::Values(vec![email.to_string()]),
            (Some(_), _) => Found::Unverified,
            (None, _) => Found::Nothing,
        };
    }
    let values: Vec<String> = match other.all.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    match values.is_empty() {
        true => Found::Nothing,
        false => Found::Values(values),
    }
}

/// The claim from the userinfo endpoint (providers put `groups` or `email`
/// there rather than in the ID token), its subject checked against the token's.
async fn user_info_claim(
    provider: &Provider,
    client: &SsoClient,
    access_token: openidconnect::AccessToken,
    subject: openidconnect::SubjectIdentifier,
) -> Found {
    let Ok(request) = client.user_info(access_token, Some(subject)) else {
        return Found::Nothing;
    };
    let info: Result<UserInfoClaims<OtherClaims, CoreGenderClaim>, _> =
        request.request_async(&provider.http).await;
    match info {
        Ok(info) => mapped_claim(
            info.additional_claims(),
            info.email(),
            info.email_verified(),
            &provider.config.claim,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the OpenID userinfo request failed");
            Found::Nothing
        }
    }
}

/// Refuse the sign-in: audited, then the sign-in page saying why.
async fn refuse(
    state: &ConsoleState,
    parts: &Parts,
    failure: Failure,
    subject: Option<String>,
) -> Response {
    let actor = subject
        .as_ref()
        .map_or("anonymous".to_owned(), |s| format!("oidc:{s}"));
    let details = json!({"via": "oidc", "reason": failure.code(), "subject": subject});
    // A stray callback (no sign-in started in this browser) is anyone's to
    // send: it is refused without growing the audit log.
    if failure != Failure::NotStartedHere {
        sign_in::audit_failure(state, actor, session::peer(parts), details).await;
    }
    let mut response = sign_in::login_page(state, failure.status(), None, Some(failure.text()));
    clear_sign_in_cookie(state, &mut response);
    response
}

fn clear_sign_in_cookie(state: &ConsoleState, response: &mut Response) {
    let cleared = session::clear_cookie(SIGN_IN_COOKIE, SIGN_IN_PATH, state.config.secure_cookies);
    if let Ok(v) = cleared.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}
