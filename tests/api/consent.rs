//! The training tag through the gateway: consent events, the cut-over
//! instant, and replicas picking up a change within the refresh bound.

use std::sync::Arc;
use std::time::Duration;

use custodian::domain::clock::SystemClock;
use custodian::domain::{ConsentEvent, TenantId, TrainingBasis};
use custodian::startup::Gateway;
use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::helpers::*;

fn body() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})
}

fn event(tenant: &str, opted_in: bool, effective_at: OffsetDateTime) -> ConsentEvent {
    ConsentEvent {
        tenant: TenantId(tenant.into()),
        opted_in,
        effective_at,
        recorded_at: effective_at,
        actor: "test".into(),
        source: "test".into(),
        note: None,
    }
}

async fn basis(app: &TestApp, key: &str) -> String {
    let response = app.chat(key, body()).await;
    response.headers()["x-custodian-training-basis"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn cutover_instant_is_exact_through_the_gateway(backend: Backend) {
    let cutover = datetime!(2023-03-01 00:00 UTC);
    let (clock, shared) = manual_clock(cutover - time::Duration::microseconds(1));
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    let response = app.chat(MANAGED_KEY, body()).await;
    assert_eq!(response.headers()["x-custodian-training"], "allowed");
    assert_eq!(
        response.headers()["x-custodian-training-basis"],
        "legacy_default"
    );
    let before = app.record(&record_id(&response)).await;
    assert_eq!(
        before.meta.received_at,
        cutover - time::Duration::microseconds(1)
    );
    assert!(before.meta.training.usable);

    clock.set(cutover);
    assert_eq!(basis(&app, MANAGED_KEY).await, "default_opt_out");
}

async fn consent_events_decide_from_their_effective_instant(backend: Backend) {
    let t = datetime!(2025-06-01 12:00 UTC);
    let (clock, shared) = manual_clock(t - time::Duration::microseconds(1));
    let mut app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    append_consent(&*app.store, &event("acme", true, t))
        .await
        .unwrap();
    append_consent(
        &*app.store,
        &event("acme", false, t + time::Duration::days(10)),
    )
    .await
    .unwrap();
    // Wait (bounded) for the cache to pick up the later event; a refresh
    // that sees it has seen the earlier one too.
    clock.set(t + time::Duration::days(10));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while basis(&app, MANAGED_KEY).await != "explicit_opt_out" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consent change never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.set(t);
    assert_eq!(basis(&app, MANAGED_KEY).await, "explicit_opt_in");
    clock.set(t - time::Duration::microseconds(1));
    assert_eq!(basis(&app, MANAGED_KEY).await, "default_opt_out");
    clock.set(t + time::Duration::days(10) - time::Duration::microseconds(1));
    assert_eq!(basis(&app, MANAGED_KEY).await, "explicit_opt_in");
    // Another tenant is untouched.
    assert_eq!(basis(&app, PASSTHROUGH_KEY).await, "default_opt_out");

    // Records keep the tag they got when received.
    app.stop().await;
    let records = app
        .store
        .list_records(&TenantId("acme".into()), 100)
        .await
        .unwrap();
    let bases: Vec<TrainingBasis> = records.iter().map(|r| r.training.basis).collect();
    assert!(bases.contains(&TrainingBasis::ExplicitOptIn));
    assert!(bases.contains(&TrainingBasis::ExplicitOptOut));
}

/// Two replicas on one PostgreSQL: a change recorded anywhere is applied by
/// both within `consent.refresh_interval` (100 ms here; polled up to 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_apply_a_consent_change_within_the_refresh_bound() {
    let upstream = crate::upstream::spawn().await;
    let db = TestDb::new(Backend::Postgres).await;
    let config = ConfigBuilder::default().build(&upstream, &db);
    let a = Gateway::start(config.clone(), Arc::new(SystemClock), true)
        .await
        .unwrap();
    let b = Gateway::start(config, Arc::new(SystemClock), true)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let tag = |addr: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(MANAGED_KEY)
                .json(&body())
                .send()
                .await
                .unwrap();
            r.headers()["x-custodian-training-basis"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(tag(a.proxy_addr).await, "default_opt_out");
    assert_eq!(tag(b.proxy_addr).await, "default_opt_out");
    let recorded_at = OffsetDateTime::now_utc();
    append_consent(&*a.store, &event("acme", true, recorded_at))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    for addr in [a.proxy_addr, b.proxy_addr] {
        while tag(addr).await != "explicit_opt_in" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "replica {addr} kept stale consent"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

both_stores!(
    cutover_instant_is_exact_through_the_gateway,
    consent_events_decide_from_their_effective_instant,
);
