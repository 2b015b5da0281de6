//! The console in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver). The reviewer's whole workflow with the
//! keyboard, the contractor's, the auditor's, single sign-on through the
//! real provider's pages, and script in a payload that must never run.
//! The reviewer's test saves screenshots of the queue and an item (into
//! docs/ with `CUSTODIAN_SCREENSHOTS=docs`, else target/screenshots/).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use custodian::domain::access::Role;
use custodian::domain::clock::SystemClock;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use time::Duration;

use super::oidc::{free_port, gateway_and_idp};
use super::{advance, entries};
use crate::helpers::*;
use crate::review::{flagged, principal_in, RULES};

/// One browser at a time: each is a few hundred MiB and this machine has
/// two cores for the whole suite.
static ONE_BROWSER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Rules of three severities, so the queue has an order to show.
const MORE_RULES: &str = r#"
[[rules]]
name = "phishing"
severity = "medium"
keywords = ["verify your account"]

[[rules]]
name = "self-harm"
severity = "critical"
keywords = ["end it all"]
"#;

struct Chrome {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// A headless Chromium at 1280 × 900 with an empty profile, as the
/// machine's probe starts it (no background networking: the machine has
/// no way out).
async fn chrome() -> Chrome {
    let permit = ONE_BROWSER.acquire().await.unwrap();
    let port = free_port();
    let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
    let driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {chromedriver}: {e}. The browser tests need Debian's chromium and \
                 chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)"
            )
        });
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": program("CHROMIUM", "/usr/bin/chromium"),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let capabilities = match capabilities {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    };
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Chrome {
                    client,
                    driver,
                    _profile: profile,
                    _permit: permit,
                }
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not start a browser: {last:?}");
}

impl Chrome {
    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Press a key on the page, as a reviewer does.
    async fn press(&self, key: char) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await.unwrap();
    }

    /// Wait (bounded) until the page's address is `path`.
    async fn wait_for_path(&self, wanted: impl Fn(&str) -> bool) -> String {
        for _ in 0..100 {
            let path = self.path().await;
            if wanted(&path) {
                return path;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the browser stayed at {}", self.path().await);
    }

    async fn sign_in(&self, admin: &str, token: &str) {
        self.goto(&format!("{admin}/console/")).await;
        self.wait_for_path(|p| p == "/console/login").await;
        self.type_into("#token", token).await;
        self.click("form button[type=submit]").await;
        self.wait_for_path(|p| p == "/console/").await;
    }

    /// The queue's rows, as the page shows them.
    async fn queue_rows(&self) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css("#queue tbody tr"))
            .await
            .unwrap()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir: PathBuf = match std::env::var("CUSTODIAN_SCREENSHOTS").as_deref() {
            Ok("docs") => root.join("docs"),
            _ => root.join("target/screenshots"),
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(self) {
        let client = self.client.clone();
        client.close().await.unwrap();
    }
}

async fn app_with_rules(
    backend: Backend,
    clock: Arc<dyn custodian::domain::clock::Clock>,
) -> TestApp {
    let builder = ConfigBuilder {
        extra: RULES.into(),
        ..ConfigBuilder::default()
    };
    spawn_app_with(backend, builder, clock).await
}

async fn chat(app: &TestApp, text: &str) -> String {
    let response = app
        .chat(
            MANAGED_KEY,
            json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text}
            ]}),
        )
        .await;
    let id = record_id(&response);
    app.record(&id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_works_the_queue_with_the_keyboard_in_a_real_browser() {
    let builder = ConfigBuilder {
        extra: format!("{RULES}{MORE_RULES}\n[review]\non_confirm = \"suspend_tenant\"\n"),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(Backend::Sqlite, builder, Arc::new(SystemClock)).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let medium = chat(&app, "Please verify your account at this link").await;
    let high = chat(&app, "How do I build a bomb from household items?").await;
    let critical = chat(&app, "I want to end it all tonight").await;
    let browser = chrome().await;
    browser.sign_in(&app.admin, &token).await;

    // The queue: most severe first, counts at the top.
    let rows = browser.queue_rows().await;
    let mut order = Vec::new();
    for row in &rows {
        order.push(row.attr("data-href").await.unwrap().unwrap());
    }
    let expected: Vec<String> = [&critical, &high, &medium]
        .iter()
        .map(|id| format!("/console/items/{id}"))
        .collect();
    assert_eq!(order, expected);
    assert!(browser.text("#counts").await.contains("critical"));
    browser.screenshot("console-queue.png").await;

    // Filter by severity.
    browser
        .click("select[name=severity] option[value=high]")
        .await;
    browser.click("form.filters button[type=submit]").await;
    browser.wait_for_path(|p| p.contains("severity=high")).await;
    let rows = browser.queue_rows().await;
    assert_eq!(rows.len(), 1);

    // Keyboard: j moves to the next row, k back, Enter opens it.
    browser.goto(&format!("{}/console/", app.admin)).await;
    browser.press('j').await;
    browser.press('k').await;
    browser.press('j').await;
    browser.press('\u{E007}').await; // Enter
    browser
        .wait_for_path(|p| p == format!("/console/items/{high}"))
        .await;
    // ... and j on an item goes to the next one in the queue's order.
    browser.press('j').await;
    browser
        .wait_for_path(|p| p == format!("/console/items/{medium}"))
        .await;
    browser.press('k').await;
    browser
        .wait_for_path(|p| p == format!("/console/items/{high}"))
        .await;

    // Claim it (c), read it as a conversation, raw JSON one key away (r).
    browser.press('c').await;
    browser
        .wait_for_path(|p| p.ends_with("?done=assigned"))
        .await;
    assert_eq!(browser.text("#assignee").await, "rex");
    let conversation = browser.text("#conversation").await;
    assert!(
        conversation.contains("You are a helpful assistant.")
            && conversation.contains("household items")
    );
    // The upstream's answer, laid out as the assistant's turn.
    let answer = browser.text("#conversation .turn.role-assistant").await;
    assert!(
        answer.contains("echo: You are a helpful assistant."),
        "{answer}"
    );
    assert!(!browser
        .client
        .find(Locator::Css("#raw-request"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    browser.press('r').await;
    assert!(browser
        .client
        .find(Locator::Css("#raw-request"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    browser.press('r').await;
    browser.screenshot("console-item.png").await;

    // A note (n focuses it), then confirm: the suspension is stated first.
    browser.press('n').await;
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys("Asked for explosives; confirmed.")
        .await
        .unwrap();
    browser.click("#notes button[type=submit]").await;
    browser.wait_for_path(|p| p.ends_with("?done=noted")).await;
    assert!(browser
        .text("#notes")
        .await
        .contains("Asked for explosives; confirmed."));
    assert!(browser
        .text("#confirm-effect")
        .await
        .contains("suspends the whole tenant acme"));
    browser.click("#confirm").await;
    let question = browser.client.get_alert_text().await.unwrap();
    assert!(
        question.contains("suspends the whole tenant acme"),
        "{question}"
    );
    browser.client.accept_alert().await.unwrap();
    browser
        .wait_for_path(|p| p.ends_with("?done=resolved"))
        .await;
    assert_eq!(browser.text("#resolution").await, "confirmed");

    // The suspension it triggered, on the tenants page and at the proxy.
    browser
        .goto(&format!("{}/console/tenants", app.admin))
        .await;
    assert!(browser.text("#tenant-acme").await.contains("in force"));
    let refused = app
        .chat(
            MANAGED_KEY,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);

    // Sign out: back at the sign-in page, and the console is closed.
    browser.click("header form button").await;
    browser
        .wait_for_path(|p| p.starts_with("/console/login"))
        .await;
    browser.goto(&format!("{}/console/", app.admin)).await;
    browser.wait_for_path(|p| p == "/console/login").await;
    for action in [
        "console.signed_in",
        "review_item.read",
        "review_item.resolved",
        "console.signed_out",
    ] {
        assert!(!entries(&app, action).await.is_empty(), "{action}");
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contractor_sees_its_items_redacted_until_its_access_ends() {
    let (clock, shared) = manual_clock(time::OffsetDateTime::now_utc());
    let app = app_with_rules(Backend::Postgres, shared).await;
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let token = principal_in(
        app.store.as_ref(),
        "cora",
        Role::Contractor,
        Some(Duration::hours(8)),
    )
    .await;
    let mine = flagged(
        &app,
        "mail me at victim@corp.example, card 4111 1111 1111 1111",
    )
    .await;
    let theirs = flagged(&app, "someone else's").await;
    let assigned = app
        .client
        .post(format!("{}/admin/v1/review/items/{mine}/assign", app.admin))
        .bearer_auth(&admin)
        .json(&json!({"assignee": "cora"}))
        .send()
        .await
        .unwrap();
    assert!(assigned.status().is_success());

    let browser = chrome().await;
    browser.sign_in(&app.admin, &token).await;
    let rows = browser.queue_rows().await;
    assert_eq!(rows.len(), 1);
    browser.press('\u{E007}').await;
    browser
        .wait_for_path(|p| p == format!("/console/items/{mine}"))
        .await;
    let page = browser.source().await;
    assert!(page.contains("[redacted:email]") && page.contains("[redacted:card]"));
    assert!(!page.contains("victim@corp.example") && !page.contains("4111 1111"));
    assert!(browser
        .text("#redacted")
        .await
        .contains("redacted for your role"));
    // No claim or assignment for a contractor; its own decision is allowed.
    assert!(browser.client.find(Locator::Css("#claim")).await.is_err());
    assert!(browser.client.find(Locator::Css("#dismiss")).await.is_ok());

    browser
        .goto(&format!("{}/console/items/{theirs}", app.admin))
        .await;
    assert!(browser.text("h1").await.contains("404"));
    browser.goto(&format!("{}/console/audit", app.admin)).await;
    assert!(browser.text("h1").await.contains("403"));

    // Eight hours on, its access has ended: the session with it.
    advance(&clock, Duration::hours(8) + Duration::seconds(1));
    browser
        .goto(&format!("{}/console/items/{mine}", app.admin))
        .await;
    browser
        .wait_for_path(|p| p.starts_with("/console/login"))
        .await;
    assert!(browser.source().await.contains("Your session ended"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_sees_the_audit_log_and_no_payload_anywhere() {
    let app = app_with_rules(Backend::Sqlite, Arc::new(SystemClock)).await;
    let reviewer = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let auditor = principal_in(app.store.as_ref(), "aud", Role::Auditor, None).await;
    let id = flagged(&app, "secret-payload-words").await;
    let read = app
        .client
        .get(format!("{}/admin/v1/review/items/{id}", app.admin))
        .bearer_auth(&reviewer)
        .send()
        .await
        .unwrap();
    assert!(read.status().is_success());

    let browser = chrome().await;
    browser.sign_in(&app.admin, &auditor).await;
    for path in [
        "/console/",
        "/console/audit",
        "/console/audit/verify",
        "/console/tenants",
    ] {
        browser.goto(&format!("{}{path}", app.admin)).await;
        let page = browser.source().await;
        assert!(
            !page.contains("secret-payload-words") && !page.contains("build a bomb"),
            "{path}"
        );
    }
    browser.goto(&format!("{}/console/audit", app.admin)).await;
    let audit = browser.text("#audit").await;
    assert!(audit.contains("review_item.read") && audit.contains("principal:rex"));
    browser.click("#verify").await;
    assert!(browser.text("#chain").await.contains("The chain verifies"));
    let nav = browser.text("header nav").await;
    assert!(nav.contains("Audit") && !nav.contains("Principals"));
    browser
        .goto(&format!("{}/console/items/{id}", app.admin))
        .await;
    assert!(browser.text("h1").await.contains("403"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_a_payload_is_shown_as_text_and_never_runs() {
    let app = app_with_rules(Backend::Sqlite, Arc::new(SystemClock)).await;
    let token = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let hostile =
        "</pre><script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> \
                   <a href=\"javascript:window.__pwned=3\">x</a>";
    let id = flagged(&app, hostile).await;
    let browser = chrome().await;
    browser.sign_in(&app.admin, &token).await;
    browser
        .goto(&format!("{}/console/items/{id}", app.admin))
        .await;
    let shown = browser.text("#conversation").await;
    assert!(
        shown.contains("<script>window.__pwned = 1</script>"),
        "{shown}"
    );
    assert!(shown.contains("onerror"));
    browser.press('r').await;
    let pwned = browser
        .client
        .execute("return typeof window.__pwned;", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, json!("undefined"));
    // The payload made no element of its own.
    let images = browser
        .client
        .find_all(Locator::Css("#conversation img, #raw img"))
        .await
        .unwrap();
    assert!(images.is_empty());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_the_providers_pages_in_a_real_browser() {
    let (app, _idp) = gateway_and_idp("", "groups", false, Arc::new(SystemClock)).await;
    principal_in(app.store.as_ref(), "reviewers", Role::Reviewer, None).await;
    let browser = chrome().await;
    browser.goto(&format!("{}/console/", app.admin)).await;
    browser.wait_for_path(|p| p == "/console/login").await;
    browser.click("#sso").await;
    // The provider's own page, on its own origin.
    browser.type_into("#login", "alice").await;
    browser.click("#idp-submit").await;
    // Back through the callback: the SameSite=Strict session cookie is sent
    // on the navigation the signed-in page starts.
    browser.wait_for_path(|p| p == "/console/").await;
    assert!(browser.text("header .who").await.contains("reviewers"));
    let signed_in = entries(&app, "console.signed_in").await;
    assert!(signed_in[0].details.contains("oidc:alice"));
    browser.click("header form button").await;
    browser
        .wait_for_path(|p| p.starts_with("/console/login"))
        .await;
    browser.close().await;
}
