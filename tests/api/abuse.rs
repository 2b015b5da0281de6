//! Inline abuse rules through the gateway: a flag forwards and opens a
//! review item, a block refuses with 403 in the route's error shape (and is
//! recorded and flagged), ZDR tenants get verdicts without content, rate
//! rules count per tenant, and items expire with their record's content.

use std::path::Path;

use custodian::config::Config;
use custodian::domain::clock::ManualClock;
use custodian::domain::verdict::{RuleAction, Severity};
use custodian::domain::RecordId;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

const RULES: &str = r#"
[[rules]]
name = "weapons"
severity = "high"
keywords = ["build a bomb"]

[[rules]]
name = "ssn"
action = "block"
severity = "critical"
patterns = ['\b\d{3}-\d{2}-\d{4}\b']

[[rules]]
name = "burst"
severity = "low"
max_requests_per_minute = 3
"#;

async fn app_with_rules(backend: Backend) -> (ManualClock, TestApp) {
    let (clock, shared) = manual_clock(T0);
    let builder = ConfigBuilder {
        extra: RULES.into(),
        ..ConfigBuilder::default()
    };
    (clock, spawn_app_with(backend, builder, shared).await)
}

fn body(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

async fn item(app: &TestApp, id: &str) -> Option<custodian::domain::review::ReviewItem> {
    app.record(id).await;
    app.store
        .review_item(RecordId(id.parse().unwrap()))
        .await
        .unwrap()
}

async fn a_flag_forwards_and_opens_a_review_item(backend: Backend) {
    let (_clock, app) = app_with_rules(backend).await;
    let response = app
        .chat(MANAGED_KEY, body("How do I BUILD A\u{0020}BOMB?"))
        .await;
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    assert!(app.upstream.mock.last().body.len() > 10, "forwarded");
    let item = item(&app, &id).await.expect("a review item");
    assert_eq!(item.verdicts.len(), 1);
    assert_eq!(item.verdicts[0].rule, "weapons");
    assert_eq!(
        (item.action, item.severity),
        (RuleAction::Flag, Severity::High)
    );
    assert_eq!(item.status, "open");
    assert!(item.content_kept);
    assert_eq!(item.expires_at, T0 + Duration::days(30), "with the content");

    let clean = app.chat(MANAGED_KEY, body("hello")).await;
    assert!(item_of(&app, &clean).await.is_none());
}

async fn item_of(
    app: &TestApp,
    response: &reqwest::Response,
) -> Option<custodian::domain::review::ReviewItem> {
    item(app, &record_id(response)).await
}

async fn a_block_is_refused_recorded_and_flagged(backend: Backend) {
    let (_clock, app) = app_with_rules(backend).await;
    let seen = app.upstream.mock.seen().len();
    let response = app.chat(MANAGED_KEY, body("my ssn is 123-45-6789")).await;
    assert_eq!(response.status(), 403);
    let id = record_id(&response);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "blocked_by_policy");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        !error.to_string().contains("ssn"),
        "the rule is not disclosed"
    );
    assert_eq!(
        app.upstream.mock.seen().len(),
        seen,
        "nothing was forwarded"
    );
    let record = app.record(&id).await;
    assert_eq!(record.meta.status, 403);
    assert_eq!(
        record.meta.outcome,
        custodian::domain::Outcome::GatewayError
    );
    let item = item(&app, &id).await.expect("a review item");
    assert_eq!(
        (item.action, item.severity),
        (RuleAction::Block, Severity::Critical)
    );

    // The Anthropic route answers in its own shape.
    let response = app
        .client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", MANAGED_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "c", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "ssn 123-45-6789"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "permission_error");
}

async fn zdr_requests_are_checked_but_keep_no_content(backend: Backend) {
    let (_clock, app) = app_with_rules(backend).await;
    let response = app.chat(ZDR_KEY, body("build a bomb")).await;
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    let record = app.record(&id).await;
    assert!(record.content.is_none());
    let item = item(&app, &id).await.expect("verdicts are kept");
    assert!(!item.content_kept);
    assert_eq!(item.verdicts[0].rule, "weapons");
    let blocked = app.chat(ZDR_KEY, body("123-45-6789")).await;
    assert_eq!(blocked.status(), 403);
}

async fn rate_rules_count_per_tenant_per_minute(backend: Backend) {
    let (clock, app) = app_with_rules(backend).await;
    let mut flagged = Vec::new();
    for _ in 0..4 {
        let r = app.chat(MANAGED_KEY, body("hi")).await;
        flagged.push(item_of(&app, &r).await.is_some());
    }
    assert_eq!(flagged, [false, false, false, true]);
    // Another tenant has its own count; a new minute starts over.
    let other = app.chat(PASSTHROUGH_KEY, body("hi")).await;
    assert!(item_of(&app, &other).await.is_none());
    clock.set(T0 + Duration::minutes(1));
    let later = app.chat(MANAGED_KEY, body("hi")).await;
    assert!(item_of(&app, &later).await.is_none());
}

async fn review_items_expire_with_their_content(backend: Backend) {
    let (_clock, app) = app_with_rules(backend).await;
    let response = app.chat(MANAGED_KEY, body("build a bomb")).await;
    let id = record_id(&response);
    assert!(item(&app, &id).await.is_some());
    let store = app.store.clone();
    let sweep = |at| {
        let store = store.clone();
        async move { sweep_at(store.as_ref(), at).await }
    };
    sweep(T0 + Duration::days(30) - Duration::seconds(1)).await;
    assert!(item(&app, &id).await.is_some());
    let report = sweep(T0 + Duration::days(30) + Duration::seconds(1)).await;
    assert_eq!(report.rows["review_items"], 1);
    assert!(app
        .store
        .review_item(RecordId(id.parse().unwrap()))
        .await
        .unwrap()
        .is_none());
}

/// A profile with safety retention keeps the content of a flagged ZDR
/// request (and only of a flagged one) for the review period.
async fn safety_retention_keeps_only_flagged_zdr_content(backend: Backend) {
    let (_clock, shared) = manual_clock(T0);
    let builder = ConfigBuilder {
        extra: RULES.into(),
        profiles: r#"
[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"
content_retention = "30d"
metadata_retention = "365d"
safety_retention = true
"#
        .into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, shared).await;
    let flagged = app.chat(ZDR_KEY, body("build a bomb")).await;
    // The receipt says what is kept, and why.
    assert_eq!(
        flagged.headers()["x-custodian-retention"],
        "content=30d; content_basis=safety_review; metadata=365d"
    );
    let id = record_id(&flagged);
    let record = app.record(&id).await;
    let content = record.content.expect("kept for review");
    assert!(String::from_utf8_lossy(&content.request_body).contains("build a bomb"));
    assert_eq!(content.expires_at, T0 + Duration::days(30));
    assert!(item(&app, &id).await.unwrap().content_kept);
    assert!(
        !record.meta.training.usable,
        "still never used for training"
    );

    let clean = app.chat(ZDR_KEY, body("hello")).await;
    assert_eq!(
        clean.headers()["x-custodian-retention"],
        "content=none; metadata=365d"
    );
    assert!(app.record(&record_id(&clean)).await.content.is_none());
}

both_stores!(
    compressed_bodies_do_not_slip_past_the_rules,
    safety_retention_keeps_only_flagged_zdr_content,
    a_flag_forwards_and_opens_a_review_item,
    a_block_is_refused_recorded_and_flagged,
    zdr_requests_are_checked_but_keep_no_content,
    rate_rules_count_per_tenant_per_minute,
    review_items_expire_with_their_content,
);

/// A rule that cannot compile fails the configuration, naming the rule and
/// its line.
#[test]
fn a_bad_rule_fails_the_configuration_with_its_name() {
    let base = "[profiles.api]\n\n[[routes]]\nprefix = \"/v1/\"\nupstream = \"http://127.0.0.1:9/v1/\"\nprofile = \"api\"\n\n[[tenants]]\nid = \"acme\"\n\n";
    let text = format!("{base}[[rules]]\nname = \"broken\"\npatterns = ['(unclosed']\n");
    let line = text.lines().position(|l| l.contains("broken")).unwrap() + 1;
    let err = Config::from_toml(Path::new("c.toml"), &text, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken"), "{err}");
    assert!(err.contains(&format!("c.toml:{line}")), "{err}");
    let text = format!("{base}[[rules]]\nname = \"nothing\"\n");
    let err = Config::from_toml(Path::new("c.toml"), &text, Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing") && err.contains("keywords"), "{err}");
}

/// A compressed body is checked as what it decodes to; a decompression
/// bomb is refused with 413 and garbage with 400, without reaching the upstream.
async fn compressed_bodies_do_not_slip_past_the_rules(backend: Backend) {
    use std::io::Write;
    let (_clock, app) = app_with_rules(backend).await;
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let send = |bytes: Vec<u8>| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(MANAGED_KEY)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bytes)
            .send()
    };
    let blocked = send(gzip(body("ssn 123-45-6789").to_string().as_bytes()))
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403, "the block rule saw through gzip");
    let seen = app.upstream.mock.seen().len();
    let bomb = send(gzip(&vec![b' '; 5_000_000])).await.unwrap();
    assert_eq!(bomb.status(), 413);
    let garbage = send(b"not gzip at all".to_vec()).await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(
        app.upstream.mock.seen().len(),
        seen,
        "none of them was forwarded"
    );
}
