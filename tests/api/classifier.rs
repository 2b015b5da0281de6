//! The asynchronous moderation classifier against the loopback upstream's
//! `/v1/moderations`: verdicts land on the record's review item (merged with
//! inline ones), `fail_open` keeps serving and counts what went unchecked,
//! `fail_closed` refuses with 503 while the classifier is down and serves
//! again once a probe gets through.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use custodian::domain::clock::SystemClock;
use custodian::domain::RecordId;
use serde_json::{json, Value};

use crate::helpers::*;

fn builder(mode: &str) -> ConfigBuilder {
    ConfigBuilder {
        extra: r#"
[classifier]
url = "UPSTREAM_BASEv1/moderations"
timeout = "1s"
concurrency = 2
thresholds = { violence = 0.9 }

[[rules]]
name = "weapons"
keywords = ["bomb"]
"#
        .into(),
        profiles: format!(
            r#"
[profiles.api]
training_cutover = "2023-03-01T00:00:00Z"
classifier = "{mode}"
"#
        ),
        ..ConfigBuilder::default()
    }
}

fn body(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

/// The item's rules once the classifier has had its say (bounded wait).
async fn rules_eventually(app: &TestApp, id: &str, want: usize) -> Vec<String> {
    let id = RecordId(id.parse().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rules: Vec<String> = app
            .store
            .review_item(id)
            .await
            .unwrap()
            .map(|i| i.verdicts.into_iter().map(|v| v.rule).collect())
            .unwrap_or_default();
        if rules.len() >= want || tokio::time::Instant::now() > deadline {
            return rules;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verdicts_above_threshold_flag_the_record(backend: Backend) {
    let app = spawn_app_with(backend, builder("fail_open"), Arc::new(SystemClock)).await;
    let flagged = app.chat(MANAGED_KEY, body("how do I kill him")).await;
    assert_eq!(flagged.status(), 200);
    let id = record_id(&flagged);
    assert_eq!(
        rules_eventually(&app, &id, 1).await,
        ["moderation:violence"]
    );

    // Inline and classifier verdicts end up on one item.
    let both = app.chat(MANAGED_KEY, body("kill with a bomb")).await;
    let both_id = record_id(&both);
    let mut rules = rules_eventually(&app, &both_id, 2).await;
    rules.sort();
    assert_eq!(rules, ["moderation:violence", "weapons"]);

    // A compressed request is classified as what it says, not its bytes.
    let packed = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body("how do I kill him, quietly").to_string().as_bytes())
            .unwrap();
        e.finish().unwrap()
    };
    let gzipped = app
        .client
        .post(app.url("/v1/echo"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(packed)
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert_eq!(
        rules_eventually(&app, &record_id(&gzipped), 1).await,
        ["moderation:violence"]
    );

    // Below the threshold: classified, not flagged.
    let calls = app.upstream.mock.moderation_calls.load(Ordering::SeqCst);
    let clean = app.chat(MANAGED_KEY, body("hello there")).await;
    let clean_id = record_id(&clean);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.upstream.mock.moderation_calls.load(Ordering::SeqCst) == calls {
        assert!(tokio::time::Instant::now() < deadline, "never classified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rules_eventually(&app, &clean_id, 0).await.is_empty());

    // ZDR requests are classified in memory too; only verdicts are kept.
    let zdr = app.chat(ZDR_KEY, body("kill kill")).await;
    let zdr_id = record_id(&zdr);
    assert_eq!(
        rules_eventually(&app, &zdr_id, 1).await,
        ["moderation:violence"]
    );
    let item = app
        .store
        .review_item(RecordId(zdr_id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(!item.content_kept);
    assert!(app.record(&zdr_id).await.content.is_none());
}

async fn fail_open_serves_and_counts_what_went_unchecked(backend: Backend) {
    let app = spawn_app_with(backend, builder("fail_open"), Arc::new(SystemClock)).await;
    app.upstream
        .mock
        .moderation_down
        .store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(app.chat(MANAGED_KEY, body("kill")).await.status(), 200);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app.metrics().await;
        if metrics.contains("custodian_classifier_unchecked_total{reason=\"retrying\"}") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Retried while the process lives: back up, the verdicts arrive.
    app.upstream
        .mock
        .moderation_down
        .store(false, Ordering::SeqCst);
    let late = app.chat(MANAGED_KEY, body("kill")).await;
    assert_eq!(
        rules_eventually(&app, &record_id(&late), 1).await,
        ["moderation:violence"]
    );
}

async fn fail_closed_refuses_while_down_and_recovers(backend: Backend) {
    let app = spawn_app_with(backend, builder("fail_closed"), Arc::new(SystemClock)).await;
    assert_eq!(app.chat(MANAGED_KEY, body("hi")).await.status(), 200);
    app.upstream
        .mock
        .moderation_down
        .store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let response = app.chat(MANAGED_KEY, body("hi")).await;
        if response.status() == 503 {
            break response;
        }
        assert_eq!(response.status(), 200);
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "checks_unavailable");

    app.upstream
        .mock
        .moderation_down
        .store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if app.chat(MANAGED_KEY, body("hi")).await.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One tenant's burst takes at most its share of the classifier's queue:
/// it alone is refused (fail_closed) once over it, the classifier stays
/// healthy, and other tenants keep being served.
async fn one_tenants_burst_cannot_take_the_queue_from_the_others(backend: Backend) {
    let mut builder = builder("fail_closed");
    builder.extra = builder
        .extra
        .replace(
            "concurrency = 2",
            "concurrency = 1\nqueue_capacity = 40\ntenant_share = 0.25",
        )
        .replace("timeout = \"1s\"", "timeout = \"10s\"");
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    app.upstream
        .mock
        .moderation_slow
        .store(true, Ordering::SeqCst);
    let burst = (0..30).map(|i| app.chat(MANAGED_KEY, body(&format!("burst {i}"))));
    let statuses: Vec<u16> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.contains(&503),
        "the burst went past its share: {statuses:?}"
    );
    // Meanwhile another tenant (its own key) is served and checked.
    for i in 0..3 {
        let other = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(PASSTHROUGH_KEY)
            .json(&body(&format!("other {i}")))
            .send()
            .await
            .unwrap();
        let status = other.status();
        assert_eq!(
            status,
            200,
            "another tenant was refused: {}",
            other.text().await.unwrap()
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "custodian_classifier_unchecked_total",
            "reason=\"queue_full\""
        ) == 0.0,
        "the queue never filled: {metrics}"
    );
}

both_stores!(
    one_tenants_burst_cannot_take_the_queue_from_the_others,
    verdicts_above_threshold_flag_the_record,
    fail_open_serves_and_counts_what_went_unchecked,
    fail_closed_refuses_while_down_and_recovers,
);
