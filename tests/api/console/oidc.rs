//! Single sign-on against a real OpenID provider: `oidc-provider` from the
//! npm registry (a certified implementation), started per test from
//! tests/oidc/provider.mjs and installed from its lock file into
//! target/oidc-node on first use. The provider's `MODE` makes it issue the
//! tokens a broken or hostile provider would (another audience, no nonce,
//! a replayed token, a foreign key): each must be refused, audited, and
//! leave no session.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use custodian::domain::access::Role;
use custodian::domain::clock::{Clock, SystemClock};
use reqwest::StatusCode;
use time::Duration;

use super::{advance, entries, Browser, Page};
use crate::helpers::*;
use crate::review::{flagged, principal_in, RULES};

const CLIENT_ID: &str = "custodian-console";

fn provider_script() -> PathBuf {
    npm_installed("oidc", "oidc-node", &["provider.mjs"]).join("provider.mjs")
}

/// A running provider, stopped with the test.
pub(crate) struct Idp {
    child: Child,
    pub issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The accounts every provider knows, by the groups they are in.
const ACCOUNTS: &str = r#"{
  "alice": {"email": "alice@corp.example", "groups": ["staff", "abuse-reviewers"]},
  "carol": {"email": "carol@vendor.example", "groups": ["acme-contractors"]},
  "bob": {"email": "bob@corp.example", "groups": ["operators"]},
  "mallory": {"email": "mallory@corp.example", "groups": ["staff"]},
  "erin": {"email": "alice@corp.example", "email_verified": false, "groups": []}
}"#;

pub(crate) async fn start_idp(redirect: &str, mode: &str, claims_in_id_token: bool) -> Idp {
    let script = tokio::task::spawn_blocking(provider_script).await.unwrap();
    let mut child = Command::new("node")
        .arg(&script)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", OIDC_CLIENT_SECRET)
        .env("REDIRECT_URI", redirect)
        .env("ACCOUNTS", ACCOUNTS)
        .env("MODE", mode)
        .env("ID_TOKEN_TTL", "60")
        .env(
            "CLAIMS_IN_ID_TOKEN",
            if claims_in_id_token { "1" } else { "0" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), first)
        .await
        .expect("the OpenID provider starts within 30 s")
        .unwrap()
        .unwrap();
    let started: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Idp {
        child,
        issuer: started["issuer"].as_str().unwrap().to_owned(),
    }
}

/// A free loopback port for the admin listener: the provider must know the
/// redirect address before the gateway starts.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `[console.oidc]` for a provider at `issuer`: groups map to principals.
pub(crate) fn oidc_config(issuer: &str, redirect: &str, claim: &str) -> String {
    format!(
        r#"
[console.oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "TEST_OIDC_SECRET" }}
redirect_url = "{redirect}"
scopes = ["email", "groups"]
claim = "{claim}"
display_name = "Corp SSO"

[[console.oidc.principals]]
value = "abuse-reviewers"
principal = "reviewers"
role = "reviewer"

[[console.oidc.principals]]
value = "alice@corp.example"
principal = "alice"
role = "reviewer"

[[console.oidc.principals]]
value = "acme-contractors"
principal = "acme-contractors"
role = "contractor"

[[console.oidc.principals]]
value = "operators"
principal = "ops"
role = "reviewer"
"#
    )
}

/// A gateway and a provider that know each other.
pub(crate) async fn gateway_and_idp(
    mode: &str,
    claim: &str,
    claims_in_id_token: bool,
    clock: Arc<dyn Clock>,
) -> (TestApp, Idp) {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/console/oidc/callback");
    let idp = start_idp(&redirect, mode, claims_in_id_token).await;
    let builder = ConfigBuilder {
        extra: format!("{RULES}\n{}", oidc_config(&idp.issuer, &redirect, claim)),
        admin_listen: Some(format!("127.0.0.1:{port}")),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(Backend::Sqlite, builder, clock).await;
    (app, idp)
}

/// Sign in as `account` through the provider's own pages, following every
/// redirect as a browser does, up to (not into) the gateway's callback:
/// the callback's address.
pub(crate) async fn through_the_provider(
    gateway: &mut Browser,
    issuer: &str,
    account: &str,
) -> String {
    let mut idp = Browser::new(issuer);
    let absolute = |location: &str| match location.starts_with("http") {
        true => location.to_owned(),
        false => format!("{issuer}{location}"),
    };
    let start = gateway.get("/console/oidc/start").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let mut next = start.location().unwrap().to_owned();
    assert!(
        next.starts_with(issuer)
            && next.contains("code_challenge_method=S256")
            && next.contains("nonce=")
    );
    // The provider: authorize, its login page, the login, back to authorize.
    for _ in 0..6 {
        if next.contains("/console/oidc/callback") {
            return next;
        }
        let page = idp.get_url(&next).await;
        next = match page.status {
            StatusCode::OK if page.body.contains("idp-submit") => {
                let form = format!("{}/login", next.trim_end_matches('/'));
                let posted = idp.post_raw(&form, &[("login", account)], &[]).await;
                assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
                absolute(posted.location().unwrap())
            }
            s if s.is_redirection() => absolute(page.location().unwrap()),
            s => panic!("the provider answered {s}: {}", page.body),
        };
    }
    panic!("the provider never sent the browser back: {next}");
}

/// The whole sign-in: the gateway's answer to the callback, and its address.
pub(crate) async fn sso_sign_in(
    gateway: &mut Browser,
    issuer: &str,
    account: &str,
) -> (Page, String) {
    let callback = through_the_provider(gateway, issuer, account).await;
    (gateway.get_url(&callback).await, callback)
}

fn has_session(page: &Page) -> bool {
    page.set_cookies()
        .iter()
        .any(|c| c.starts_with("custodian_session=") && !c.contains("Max-Age=0"))
}

async fn failures(app: &TestApp) -> Vec<String> {
    entries(app, "console.sign_in_failed")
        .await
        .into_iter()
        .map(|e| e.details)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_through_the_identity_provider_by_group() {
    let (app, idp) = gateway_and_idp("", "groups", false, Arc::new(SystemClock)).await;
    principal_in(app.store.as_ref(), "reviewers", Role::Reviewer, None).await;
    let id = flagged(&app, "x").await;
    let mut browser = Browser::new(&app.admin);
    let login = browser.get("/console/login").await;
    assert!(login.body.contains("Sign in with Corp SSO"));

    // Groups come from userinfo here (the provider keeps them out of the ID token).
    let callback = through_the_provider(&mut browser, &idp.issuer, "alice").await;
    let before_callback = browser.cookies.clone();
    let page = browser.get_url(&callback).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(has_session(&page));
    let queue = browser.get("/console/").await;
    assert!(
        queue.body.contains("reviewers · reviewer"),
        "{}",
        queue.body
    );
    browser.get(&format!("/console/items/{id}")).await;
    let signed_in = entries(&app, "console.signed_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0].actor, "principal:reviewers");
    assert!(
        signed_in[0].details.contains("\"via\":\"oidc:alice\"")
            && signed_in[0].details.contains("abuse-reviewers")
    );
    let reads = entries(&app, "review_item.read").await;
    assert!(
        reads[0].details.contains("oidc:alice"),
        "who read it, not only which principal"
    );

    // The same callback again (a replay, or the back button): refused, no session.
    let mut replay = Browser::new(&app.admin);
    replay.cookies = before_callback;
    let again = replay.get_url(&callback).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(!has_session(&again));
    assert!(failures(&app)
        .await
        .iter()
        .any(|d| d.contains("no_sign_in_under_way")));
    // A callback with no sign-in started in this browser is refused too,
    // without growing the audit log (anyone can send one).
    let audited = failures(&app).await.len();
    let stranger = Browser::new(&app.admin).get_url(&callback).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    assert_eq!(failures(&app).await.len(), audited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapped_claim_can_be_the_id_tokens_email() {
    let (app, idp) = gateway_and_idp("", "email", true, Arc::new(SystemClock)).await;
    principal_in(app.store.as_ref(), "alice", Role::Reviewer, None).await;
    let mut browser = Browser::new(&app.admin);
    let (page, _) = sso_sign_in(&mut browser, &idp.issuer, "alice").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let queue = browser.get("/console/").await;
    assert!(queue.body.contains("alice · reviewer"));
    // Bob's e-mail maps to nobody.
    let (page, _) = sso_sign_in(&mut Browser::new(&app.admin), &idp.issuer, "bob").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // Erin set her address to Alice's, and the provider does not vouch for it.
    let (page, _) = sso_sign_in(&mut Browser::new(&app.admin), &idp.issuer, "erin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!has_session(&page));
    assert!(failures(&app)
        .await
        .iter()
        .any(|d| d.contains("email_unverified") && d.contains("erin")));
    assert_eq!(
        entries(&app, "console.signed_in").await.len(),
        1,
        "alice's only"
    );
}

/// Each hostile token: refused with its reason, audited, no session.
async fn refused_with(mode: &str, reason: &str) {
    let (app, idp) = gateway_and_idp(mode, "groups", false, Arc::new(SystemClock)).await;
    principal_in(app.store.as_ref(), "reviewers", Role::Reviewer, None).await;
    if mode == "replay" {
        // The first sign-in is genuine; its token comes back for the next.
        let (first, _) = sso_sign_in(&mut Browser::new(&app.admin), &idp.issuer, "alice").await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    }
    let mut browser = Browser::new(&app.admin);
    let (page, _) = sso_sign_in(&mut browser, &idp.issuer, "alice").await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "{mode}: {}",
        page.body
    );
    assert!(!has_session(&page), "{mode}");
    assert!(page.body.contains("token was refused"));
    assert_eq!(browser.get("/console/").await.status, StatusCode::SEE_OTHER);
    let failures = failures(&app).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains(reason), "{mode}: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    refused_with("wrong-audience", "wrong_audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_its_nonce_is_refused() {
    refused_with("no-nonce", "nonce_mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_is_refused_by_its_nonce() {
    refused_with("replay", "nonce_mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_another_key_is_refused() {
    refused_with("foreign-key", "bad_signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_on_the_gateways_clock() {
    let (clock, shared) = manual_clock(time::OffsetDateTime::now_utc());
    let (app, idp) = gateway_and_idp("", "groups", false, shared).await;
    principal_in(app.store.as_ref(), "reviewers", Role::Reviewer, None).await;
    let mut in_time = Browser::new(&app.admin);
    let (ok, _) = sso_sign_in(&mut in_time, &idp.issuer, "alice").await;
    assert_eq!(ok.status, StatusCode::OK, "in time: {}", ok.body);
    // The provider's ID tokens live 60 s; this one is read 5 minutes on
    // (the sign-in itself may take 10).
    let mut browser = Browser::new(&app.admin);
    let callback = through_the_provider(&mut browser, &idp.issuer, "alice").await;
    advance(&clock, Duration::minutes(5));
    let page = browser.get_url(&callback).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(!has_session(&page));
    assert!(failures(&app)
        .await
        .iter()
        .any(|d| d.contains("token_expired")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_groups_wrong_roles_and_ended_contractors_get_no_access() {
    let (app, idp) = gateway_and_idp("", "groups", false, Arc::new(SystemClock)).await;
    let store = app.store.as_ref();
    principal_in(store, "reviewers", Role::Reviewer, None).await;
    // Mapped as a reviewer, but an admin: the mapping and the store disagree.
    principal_in(store, "ops", Role::Admin, None).await;
    // Its access ended an hour ago.
    principal_in(
        store,
        "acme-contractors",
        Role::Contractor,
        Some(Duration::hours(-1)),
    )
    .await;
    for (account, status, reason) in [
        ("mallory", StatusCode::FORBIDDEN, "no_access"),
        ("bob", StatusCode::FORBIDDEN, "role_mismatch"),
        ("carol", StatusCode::UNAUTHORIZED, "principal_inactive"),
    ] {
        let mut browser = Browser::new(&app.admin);
        let (page, _) = sso_sign_in(&mut browser, &idp.issuer, account).await;
        assert_eq!(page.status, status, "{account}: {}", page.body);
        assert!(!has_session(&page), "{account}");
        let failures = failures(&app).await;
        assert!(
            failures
                .iter()
                .any(|d| d.contains(reason) && d.contains(&format!("\"subject\":\"{account}\""))),
            "{account}: {failures:?}"
        );
    }
    assert!(entries(&app, "console.signed_in").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_and_says_so_when_its_identity_provider_is_down() {
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/console/oidc/callback");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let builder = ConfigBuilder {
        extra: oidc_config(&closed, &redirect, "groups"),
        admin_listen: Some(format!("127.0.0.1:{port}")),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(Backend::Sqlite, builder, Arc::new(SystemClock)).await;
    let page = Browser::new(&app.admin).get("/console/oidc/start").await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.body);
    assert!(page.body.contains("could not be reached"));
    // Token sign-in still works beside it.
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    assert_eq!(
        Browser::new(&app.admin).sign_in(&token).await.status,
        StatusCode::OK
    );
}
