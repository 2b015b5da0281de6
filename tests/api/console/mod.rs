//! The reviewers' console over HTTP, as a browser would speak it: token
//! sign-in, sessions (cookies, timeouts, revocation), CSRF and cross-site
//! posts, the security headers, what each role sees, and the audit trail.
//! `oidc` signs in through a real OpenID provider; `browser` drives Chromium.

mod browser;
mod oidc;

use std::collections::BTreeMap;
use std::sync::Arc;

use custodian::domain::access::Role;
use custodian::domain::clock::{Clock, SystemClock};
use custodian::store::AuditFilter;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;
use crate::review::{flagged, principal_in, RULES};

/// A browser's view of the console: its cookies, and the CSRF token of the
/// last page it loaded.
pub(crate) struct Browser {
    pub client: reqwest::Client,
    pub admin: String,
    pub cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
}

/// What one request answered.
pub(crate) struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

impl Browser {
    pub fn new(admin: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
            admin: admin.to_owned(),
            cookies: BTreeMap::new(),
            csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE) {
            let text = set.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        if let Some(token) = hidden_value(&body, "csrf") {
            self.csrf = Some(token);
        }
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let url = format!("{}{path}", self.admin);
        self.get_url(&url).await
    }

    /// A GET of any address, with this browser's cookies.
    pub async fn get_url(&mut self, url: &str) -> Page {
        let response = self
            .client
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(response).await
    }

    /// A form post with this browser's CSRF token, as a console page sends it.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, &[]).await
    }

    /// A form post exactly as given, with extra headers.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let url = match path.starts_with("http") {
            true => path.to_owned(),
            false => format!("{}{path}", self.admin),
        };
        let mut request = self
            .client
            .post(url)
            .header(COOKIE, self.cookie_header())
            .form(fields);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        self.finish(response).await
    }

    /// Sign in with a principal's token; the page it lands on.
    pub async fn sign_in(&mut self, token: &str) -> Page {
        let login = self.get("/console/login").await;
        assert_eq!(login.status, StatusCode::OK);
        let page = self.post("/console/login", &[("token", token)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        self.get("/console/").await
    }
}

/// The value of the hidden input `name` in a page.
pub(crate) fn hidden_value(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_owned())
}

async fn app_with(backend: Backend, extra: &str, clock: Arc<dyn Clock>) -> TestApp {
    let builder = ConfigBuilder {
        extra: format!("{RULES}\n{extra}"),
        ..ConfigBuilder::default()
    };
    spawn_app_with(backend, builder, clock).await
}

async fn app(backend: Backend) -> TestApp {
    app_with(backend, "", Arc::new(SystemClock)).await
}

fn advance(clock: &custodian::domain::clock::ManualClock, by: Duration) {
    clock.set(clock.now() + by);
}

async fn entries(app: &TestApp, action: &str) -> Vec<custodian::domain::audit::AuditEntry> {
    app.store
        .query_audit(&AuditFilter {
            action: Some(action.into()),
            limit: 1_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

both_stores!(
    a_reviewer_signs_in_with_a_token_and_works_an_item,
    a_revoked_principals_session_ends_at_once,
    sessions_end_when_idle_or_past_their_absolute_timeout,
);

async fn a_reviewer_signs_in_with_a_token_and_works_an_item(backend: Backend) {
    let app = app_with(
        backend,
        "[review]\non_confirm = \"suspend_tenant\"",
        Arc::new(SystemClock),
    )
    .await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let id = flagged(&app, "a@b.example").await;
    let mut browser = Browser::new(&app.admin);

    // Signed out, every page leads to the sign-in page.
    let page = browser.get("/console/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/console/login"));
    let page = browser.get(&format!("/console/items/{id}")).await;
    assert_eq!(page.location(), Some("/console/login"));

    let login = browser.get("/console/login").await;
    let signed_in = browser.post("/console/login", &[("token", &token)]).await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let session = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("custodian_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "loopback listener: {session}");
    assert!(login.body.contains("Principal token"));
    assert_eq!(entries(&app, "console.signed_in").await.len(), 1);

    // The queue lists the item; listing reads no payload and is not audited.
    let queue = browser.get("/console/").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains(&id) && !queue.body.contains("a@b.example"));
    assert!(entries(&app, "review_item.read").await.is_empty());

    // The item: its conversation, audited in the read's transaction.
    let item = browser.get(&format!("/console/items/{id}")).await;
    assert_eq!(item.status, StatusCode::OK);
    assert!(
        item.body.contains("build a bomb a@b.example"),
        "{}",
        item.body
    );
    assert!(item.body.contains("Chat Completions"));
    assert!(item.body.contains("suspends the whole tenant acme"));
    let reads = entries(&app, "review_item.read").await;
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].actor, "principal:rex");
    assert!(
        reads[0].details.contains("\"via\":\"token\""),
        "{}",
        reads[0].details
    );

    // Claim, note, confirm: the suspension is in force at once.
    let page = browser
        .post(
            &format!("/console/items/{id}/assign"),
            &[("assignee", "rex")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    browser.get(&format!("/console/items/{id}")).await;
    let page = browser
        .post(
            &format!("/console/items/{id}/notes"),
            &[("text", "asked about explosives")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    browser.get(&format!("/console/items/{id}")).await;
    let page = browser
        .post(
            &format!("/console/items/{id}/resolve"),
            &[("resolution", "confirmed"), ("note", "")],
        )
        .await;
    assert_eq!(
        page.location(),
        Some(format!("/console/items/{id}?done=resolved").as_str())
    );
    let item = browser
        .get(&format!("/console/items/{id}?done=resolved"))
        .await;
    assert!(item.body.contains("asked about explosives") && item.body.contains("confirmed"));
    let tenants = browser.get("/console/tenants").await;
    assert!(tenants.body.contains("in force"), "{}", tenants.body);
    let refused = app
        .chat(
            MANAGED_KEY,
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    for action in [
        "review_item.assigned",
        "review_item.noted",
        "review_item.resolved",
        "suspension.added",
    ] {
        assert_eq!(entries(&app, action).await.len(), 1, "{action}");
    }

    // Signing out ends the session (audited); its cookie opens nothing after.
    let old = browser.cookies.clone();
    browser.get("/console/").await;
    let out = browser.post("/console/logout", &[]).await;
    assert_eq!(out.location(), Some("/console/login?signed_out=1"));
    assert_eq!(entries(&app, "console.signed_out").await.len(), 1);
    browser.cookies = old;
    let page = browser.get("/console/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

async fn a_revoked_principals_session_ends_at_once(backend: Backend) {
    let app = app(backend).await;
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    flagged(&app, "x").await;
    let mut rex = Browser::new(&app.admin);
    assert_eq!(rex.sign_in(&token).await.status, StatusCode::OK);

    // An admin revokes rex in the console.
    let mut ada = Browser::new(&app.admin);
    let principals = {
        ada.sign_in(&admin).await;
        ada.get("/console/principals").await
    };
    assert!(principals.body.contains("rex"));
    let page = ada
        .post("/console/principals/revoke", &[("name", "rex")])
        .await;
    assert_eq!(page.location(), Some("/console/principals?done=revoked"));

    let page = rex.get("/console/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/console/login?ended=1"));
    // Nor can it post with a form it still holds.
    let page = rex.post("/console/claim", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(entries(&app, "review_item.claimed").await.len(), 0);
    // And its token no longer signs in.
    let mut again = Browser::new(&app.admin);
    again.get("/console/login").await;
    let page = again.post("/console/login", &[("token", &token)]).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let failures = entries(&app, "console.sign_in_failed").await;
    assert_eq!(failures.len(), 1);
    assert!(
        !failures[0].details.contains(&token[5..]),
        "no token in the audit log"
    );
}

async fn sessions_end_when_idle_or_past_their_absolute_timeout(backend: Backend) {
    let start = OffsetDateTime::now_utc();
    let (clock, shared) = manual_clock(start);
    let app = app_with(
        backend,
        "[console]\nidle_timeout = \"30m\"\nabsolute_timeout = \"2h\"",
        shared,
    )
    .await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;

    advance(&clock, Duration::minutes(29));
    assert_eq!(browser.get("/console/").await.status, StatusCode::OK);
    advance(&clock, Duration::minutes(31));
    let page = browser.get("/console/").await;
    assert_eq!(
        page.location(),
        Some("/console/login?ended=1"),
        "idle for 31 minutes"
    );

    // Busy all along, a session still ends at its absolute timeout.
    browser.sign_in(&token).await;
    for _ in 0..5 {
        advance(&clock, Duration::minutes(20));
        assert_eq!(browser.get("/console/").await.status, StatusCode::OK);
    }
    advance(&clock, Duration::minutes(21));
    let page = browser.get("/console/").await;
    assert_eq!(
        page.location(),
        Some("/console/login?ended=1"),
        "past 2 hours"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_sessions_csrf_token_or_from_another_site_change_nothing() {
    let app = app(Backend::Sqlite).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let other = principal_in(app.store.as_ref(), "eve", Role::Reviewer, None).await;
    let id = flagged(&app, "x").await;
    let mut rex = Browser::new(&app.admin);
    rex.sign_in(&token).await;
    let mut eve = Browser::new(&app.admin);
    eve.sign_in(&other).await;
    let eves_token = eve.csrf.clone().unwrap();
    let note = format!("/console/items/{id}/notes");

    let refusals = [
        (vec![("text", "no token")], vec![]),
        (vec![("csrf", ""), ("text", "empty token")], vec![]),
        (
            vec![
                ("csrf", eves_token.as_str()),
                ("text", "another session's token"),
            ],
            vec![],
        ),
        (vec![("csrf", "00ff"), ("text", "made up")], vec![]),
    ];
    for (fields, headers) in &refusals {
        let page = rex.post_raw(&note, fields, headers).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{fields:?}: {}",
            page.body
        );
    }
    // With the right token but sent by another site.
    let csrf = rex.csrf.clone().unwrap();
    for header in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let page = rex
            .post_raw(&note, &[("csrf", &csrf), ("text", "cross-site")], &[header])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{header:?}");
    }
    // The sign-in form needs the cookie its page set.
    let mut stranger = Browser::new(&app.admin);
    let page = stranger
        .post_raw(
            "/console/login",
            &[("token", &token), ("csrf", "guess")],
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page
        .set_cookies()
        .iter()
        .any(|c| c.contains("custodian_session=")));

    assert!(entries(&app, "review_item.noted").await.is_empty());
    let item = app
        .store
        .review_item(custodian::domain::RecordId(id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.notes, serde_json::json!([]));
    // The right token from the console's own page does work.
    let page = rex.post(&note, &[("text", "fine")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_a_strict_content_security_policy_and_no_caching() {
    let app = app(Backend::Sqlite).await;
    let token = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let id = flagged(&app, "x").await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    for path in [
        "/console/login".to_owned(),
        "/console/".into(),
        format!("/console/items/{id}"),
        "/console/audit".into(),
        "/console/audit/verify".into(),
        "/console/tenants".into(),
        "/console/principals".into(),
        "/console/nothing-here".into(),
    ] {
        let page = browser.get(&path).await;
        let header = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        // No inline script or style: the policy would block them.
        assert!(
            !page.body.contains("<script>") && !page.body.contains(" style="),
            "{path}"
        );
    }
    let css = browser.get("/console/assets/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let js = browser.get("/console/assets/console.js").await;
    assert!(js.body.contains("keydown"));

    // The console is never on the proxy listener.
    let proxied = app.client.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(proxied.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_only_what_the_desk_lets_it() {
    let start = OffsetDateTime::now_utc();
    let (clock, shared) = manual_clock(start);
    let app = app_with(Backend::Postgres, "", shared).await;
    let store = app.store.as_ref();
    let admin = principal_in(store, "ada", Role::Admin, None).await;
    let auditor = principal_in(store, "aud", Role::Auditor, None).await;
    let contractor = principal_in(store, "cora", Role::Contractor, Some(Duration::hours(2))).await;
    let mine = flagged(&app, "write to jane@corp.example or +1 415 555 0100").await;
    let theirs = flagged(&app, "not cora's").await;

    let mut ada = Browser::new(&app.admin);
    ada.sign_in(&admin).await;
    ada.get(&format!("/console/items/{mine}")).await;
    let page = ada
        .post(
            &format!("/console/items/{mine}/assign"),
            &[("assignee", "cora")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // The contractor: only its item, redacted; another is "not found".
    let mut cora = Browser::new(&app.admin);
    let queue = cora.sign_in(&contractor).await;
    assert!(queue.body.contains(&mine) && !queue.body.contains(&theirs));
    assert!(
        !queue.body.contains("id=\"counts\""),
        "contractors get no counts"
    );
    let item = cora.get(&format!("/console/items/{mine}")).await;
    assert_eq!(item.status, StatusCode::OK);
    assert!(item.body.contains("[redacted:email]") && item.body.contains("[redacted:phone]"));
    assert!(!item.body.contains("jane@corp.example") && !item.body.contains("555 0100"));
    let other = cora.get(&format!("/console/items/{theirs}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let made_up = cora.get("/console/items/not-an-id").await;
    assert_eq!(made_up.status, StatusCode::NOT_FOUND);
    for path in ["/console/audit", "/console/principals", "/console/tenants"] {
        assert_eq!(cora.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Its access ends at the principal's expiry, session or not.
    advance(&clock, Duration::hours(2) + Duration::seconds(1));
    let page = cora.get("/console/").await;
    assert_eq!(page.location(), Some("/console/login?ended=1"));
    advance(&clock, -(Duration::hours(2) + Duration::seconds(1)));

    // The auditor: counts and the audit log, never a payload.
    let mut aud = Browser::new(&app.admin);
    let queue = aud.sign_in(&auditor).await;
    assert!(queue.body.contains("id=\"counts\""));
    assert!(!queue.body.contains(&mine) && !queue.body.contains("bomb"));
    assert_eq!(
        aud.get(&format!("/console/items/{mine}")).await.status,
        StatusCode::FORBIDDEN
    );
    let audit = aud.get("/console/audit").await;
    assert!(audit.body.contains("review_item.read") && audit.body.contains("principal:cora"));
    assert!(!audit.body.contains("jane@corp.example"));
    let verify = aud.get("/console/audit/verify").await;
    assert!(
        verify.body.contains("data-verified=\"true\""),
        "{}",
        verify.body
    );
    assert_eq!(aud.get("/console/tenants").await.status, StatusCode::OK);
    assert_eq!(
        aud.get("/console/principals").await.status,
        StatusCode::FORBIDDEN
    );
    let post = aud
        .post(&format!("/console/items/{mine}/notes"), &[("text", "x")])
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_principal_whose_token_is_shown_once() {
    let app = app(Backend::Sqlite).await;
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let mut ada = Browser::new(&app.admin);
    ada.sign_in(&admin).await;
    ada.get("/console/principals").await;
    let page = ada
        .post(
            "/console/principals",
            &[
                ("name", "new-reviewer"),
                ("role", "reviewer"),
                ("expires", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let start = page.body.find("cstp_").expect("the token is shown");
    let token = page.body[start..start + 69].to_owned();
    // It works, and the principals page never shows it again.
    let mut newcomer = Browser::new(&app.admin);
    assert_eq!(newcomer.sign_in(&token).await.status, StatusCode::OK);
    let again = ada.get("/console/principals").await;
    assert!(again.body.contains("new-reviewer") && !again.body.contains(&token));
    let added = entries(&app, "principal.added").await;
    assert!(added.iter().any(|e| e.actor == "principal:ada"));
    assert!(!added.iter().any(|e| e.details.contains(&token[5..])));
    // Bad input is refused with a reason, not stored.
    let page = ada
        .post("/console/principals", &[("name", "x"), ("role", "emperor")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = ada
        .post(
            "/console/principals",
            &[
                ("name", "old"),
                ("role", "reviewer"),
                ("expires", "2001-01-01"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    // An admin cannot revoke itself.
    let page = ada
        .post("/console/principals/revoke", &[("name", "ada")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_a_payload_reaches_the_page_as_text() {
    let app = app(Backend::Sqlite).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let id = flagged(
        &app,
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
    )
    .await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    let item = browser.get(&format!("/console/items/{id}")).await;
    assert!(!item.body.contains("<script>alert") && !item.body.contains("<img src=x"));
    assert!(item.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_gives_an_error_page_not_a_crash() {
    let app = app(Backend::Postgres).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    // The database is dropped under the running gateway.
    if let TestDb::Postgres {
        name, admin_url, ..
    } = &app._db
    {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
        conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
    let page = browser.get("/console/").await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(page.body.contains("store is unavailable"));
    let login = Browser::new(&app.admin).get("/console/login").await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "signing in needs no store to show its page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_bounded_and_the_rest_of_the_admin_listener_is_untouched() {
    let app = app(Backend::Sqlite).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let mut browser = Browser::new(&app.admin);
    browser.get("/console/login").await;
    let mut statuses = Vec::new();
    for _ in 0..31 {
        let page = browser
            .post("/console/login", &[("token", "cstp_wrong")])
            .await;
        statuses.push(page.status);
    }
    assert!(
        statuses[..30]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[30], StatusCode::TOO_MANY_REQUESTS);
    // Refused before anything is written: the audit log holds the 30 only.
    assert_eq!(entries(&app, "console.sign_in_failed").await.len(), 30);
    let page = browser.post("/console/login", &[("token", &token)]).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers.contains_key("retry-after"));

    // The console's pages do not answer for the rest of the admin listener.
    let unknown = app
        .client
        .get(format!("{}/admin/v1/nothing", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(!unknown.text().await.unwrap().contains("<html"));
    let ready = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_ends_the_browsers_old_session_and_bad_filters_are_refused() {
    let app = app(Backend::Postgres).await;
    let token = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    let old = browser.cookies.clone();
    browser.sign_in(&token).await;
    assert_ne!(
        old.get("custodian_session"),
        browser.cookies.get("custodian_session")
    );
    let mut stale = Browser::new(&app.admin);
    stale.cookies = old;
    assert_eq!(stale.get("/console/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/console/").await.status, StatusCode::OK);

    for path in [
        "/console/?severity=extreme",
        "/console/?cursor=zz",
        "/console/audit?after=abc",
        "/console/audit?since=yesterday",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(page.headers.contains_key("content-security-policy"));
    }
    // The guard's refusal carries the same headers.
    let csrf = browser.csrf.clone().unwrap();
    let page = browser
        .post_raw(
            "/console/claim",
            &[("csrf", &csrf)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.headers.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_says_what_became_of_its_content_and_tenants_show_their_consent() {
    let app = app(Backend::Sqlite).await;
    let token = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let kept = flagged(&app, "kept").await;
    let gone = flagged(&app, "gone").await;
    // A zero-data-retention tenant's flagged request: an item, no content.
    let response = app
        .chat(ZDR_KEY, serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "build a bomb"}]}))
        .await;
    let zdr = record_id(&response);
    app.record(&zdr).await;
    // Content whose row went (swept, erased) while its item stays.
    {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::SqliteConnection::connect(app._db.url())
            .await
            .unwrap();
        let id: uuid::Uuid = gone.parse().unwrap();
        conn.execute(sqlx::query("DELETE FROM record_content WHERE record_id = ?").bind(id))
            .await
            .unwrap();
    }
    let now = OffsetDateTime::now_utc();
    append_consent(
        app.store.as_ref(),
        &custodian::domain::ConsentEvent {
            tenant: custodian::domain::TenantId("acme".into()),
            opted_in: true,
            effective_at: now - Duration::days(1),
            recorded_at: now - Duration::days(1),
            actor: "operator:legal".into(),
            source: "cli".into(),
            note: Some("signed DPA".into()),
        },
    )
    .await
    .unwrap();

    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    let page = browser.get(&format!("/console/items/{kept}")).await;
    assert!(page.body.contains("id=\"conversation\"") && page.body.contains("build a bomb kept"));
    let page = browser.get(&format!("/console/items/{gone}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("data-state=\"expired\"") && page.body.contains("has expired"));
    assert!(!page.body.contains("id=\"conversation\""));
    let page = browser.get(&format!("/console/items/{zdr}")).await;
    assert!(page.body.contains("data-state=\"not_kept\"") && page.body.contains("never stored"));
    // Each view is an audited read, whatever the content's state.
    assert_eq!(entries(&app, "review_item.read").await.len(), 3);

    let tenants = browser.get("/console/tenants").await;
    let acme = &tenants.body[tenants.body.find("id=\"tenant-acme\"").unwrap()..];
    let acme = &acme[..acme.find("</section>").unwrap()];
    assert!(
        acme.contains("opted in")
            && acme.contains("signed DPA")
            && acme.contains("explicit_opt_in"),
        "{acme}"
    );
    let zdr_co = &tenants.body[tenants.body.find("id=\"tenant-zdr-co\"").unwrap()..];
    let zdr_co = &zdr_co[..zdr_co.find("</section>").unwrap()];
    assert!(zdr_co.contains("zero data retention") && zdr_co.contains("zero_data_retention"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_turned_off_is_not_there() {
    let app = app_with(
        Backend::Sqlite,
        "[console]\nenabled = false",
        Arc::new(SystemClock),
    )
    .await;
    for path in ["/console/", "/console/login", "/console/assets/console.js"] {
        let page = Browser::new(&app.admin).get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    // The API beside it is untouched.
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let api = app
        .client
        .get(format!("{}/admin/v1/review/items", app.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_next_opens_the_most_severe_oldest_item_then_says_the_queue_is_empty() {
    let app = app_with(
        Backend::Postgres,
        "[[rules]]\nname = \"phishing\"\nseverity = \"low\"\nkeywords = [\"verify your account\"]",
        Arc::new(SystemClock),
    )
    .await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let low = {
        let response = app
            .chat(MANAGED_KEY, serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "verify your account"}]}))
            .await;
        let id = record_id(&response);
        app.record(&id).await;
        id
    };
    let high = flagged(&app, "later but worse").await;
    let mut browser = Browser::new(&app.admin);
    browser.sign_in(&token).await;
    for expected in [&high, &low] {
        let page = browser.post("/console/claim", &[]).await;
        assert_eq!(
            page.location(),
            Some(format!("/console/items/{expected}").as_str())
        );
        let item = browser.get(&format!("/console/items/{expected}")).await;
        assert!(item.body.contains("id=\"assignee\">rex<"), "{}", item.body);
    }
    let page = browser.post("/console/claim", &[]).await;
    assert_eq!(page.location(), Some("/console/?done=empty"));
    let queue = browser.get("/console/?done=empty").await;
    assert!(queue.body.contains("Nothing left to claim"));
    let mine = browser.get("/console/?status=claimed&assignee=rex").await;
    assert!(mine.body.contains(&high) && mine.body.contains(&low));
}
