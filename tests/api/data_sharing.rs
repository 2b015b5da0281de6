//! Tenant self-service (`/custodian/v1/data-sharing`): reading and changing
//! the training choice with the tenant's own key, the tag requests get
//! afterwards, the audit entry of every change, and the refusals.

use std::sync::Arc;

use custodian::domain::audit::ChainVerifier;
use custodian::domain::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::helpers::*;

const PATH: &str = "/custodian/v1/data-sharing";

fn body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})
}

async fn put(app: &TestApp, key: &str, body: &str) -> reqwest::Response {
    app.client
        .put(app.url(PATH))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn get_as(app: &TestApp, key: &str) -> reqwest::Response {
    app.client
        .get(app.url(PATH))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn tag(response: &reqwest::Response) -> (String, String) {
    let h = response.headers();
    (
        h["x-custodian-training"].to_str().unwrap().to_owned(),
        h["x-custodian-training-basis"].to_str().unwrap().to_owned(),
    )
}

fn owned(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

async fn a_tenant_reads_and_changes_its_own_choice(backend: Backend) {
    let app = spawn_app(backend).await;

    let doc = json_of(app.get(PATH).await).await;
    assert_eq!(doc["tenant"], "acme");
    assert_eq!(doc["training_opt_in"], Value::Null);
    assert_eq!(doc["history"], json!([]));
    assert_eq!(
        doc["routes"][0],
        json!({"route": "openai", "profile": "api", "training": "denied", "basis": "default_opt_out"})
    );
    assert_eq!(
        tag(&app.chat(MANAGED_KEY, body()).await),
        owned("denied", "default_opt_out")
    );

    let response = put(
        &app,
        MANAGED_KEY,
        r#"{"training_opt_in": true, "note": "ok by legal"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let doc = json_of(response).await;
    assert_eq!(doc["training_opt_in"], true);
    assert_eq!(doc["routes"][0]["basis"], "explicit_opt_in");
    let history = doc["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["source"], "self_service");
    assert_eq!(history[0]["note"], "ok by legal");
    assert!(history[0]["actor"].as_str().unwrap().starts_with("key:mk_"));

    // This replica applies the change to the very next request.
    assert_eq!(
        tag(&app.chat(MANAGED_KEY, body()).await),
        owned("allowed", "explicit_opt_in")
    );
    // Another tenant is untouched.
    assert_eq!(
        tag(&app.chat(PASSTHROUGH_KEY, body()).await),
        owned("denied", "default_opt_out")
    );

    // The change is audited: who, what, from where, and the chain holds.
    let entries = app.store.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.action, "consent.changed");
    assert_eq!(entry.tenant.as_ref().unwrap().0, "acme");
    assert!(entry.actor.starts_with("key:mk_"), "{}", entry.actor);
    assert!(entry.source.starts_with("127.0.0.1:"), "{}", entry.source);
    assert!(entry
        .subject
        .as_deref()
        .unwrap()
        .starts_with("consent_event:"));
    assert!(
        !entry.details.contains("legal"),
        "notes stay out of the audit log"
    );
    let mut verifier = ChainVerifier::new();
    for e in &entries {
        verifier.check(e).unwrap();
    }
}

async fn a_pass_through_tenant_changes_only_its_own_choice(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = put(&app, PASSTHROUGH_KEY, r#"{"training_opt_in": true}"#).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["tenant"], "beta");
    assert_eq!(
        tag(&app.chat(PASSTHROUGH_KEY, body()).await),
        owned("allowed", "explicit_opt_in")
    );
    let acme = json_of(app.get(PATH).await).await;
    assert_eq!(acme["history"], json!([]));
}

async fn a_scheduled_change_applies_from_its_instant_and_never_rewrites_tags(backend: Backend) {
    let t0 = datetime!(2026-06-01 12:00 UTC);
    let (clock, shared) = manual_clock(t0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    put(&app, MANAGED_KEY, r#"{"training_opt_in": true}"#).await;
    let opted_in = app.chat(MANAGED_KEY, body()).await;
    assert_eq!(tag(&opted_in), owned("allowed", "explicit_opt_in"));

    let at = t0 + time::Duration::hours(1);
    let change = json!({"training_opt_in": false, "effective_at": at.format(&Rfc3339).unwrap()});
    let doc = json_of(put(&app, MANAGED_KEY, &change.to_string()).await).await;
    assert_eq!(doc["training_opt_in"], true, "still opted in until {at}");
    assert_eq!(doc["scheduled"].as_array().unwrap().len(), 1);

    clock.set(at - time::Duration::microseconds(1));
    assert_eq!(
        tag(&app.chat(MANAGED_KEY, body()).await),
        owned("allowed", "explicit_opt_in")
    );
    clock.set(at);
    assert_eq!(
        tag(&app.chat(MANAGED_KEY, body()).await),
        owned("denied", "explicit_opt_out")
    );
    // The request received while opted in keeps its tag.
    let kept = app.record(&record_id(&opted_in)).await;
    assert!(kept.meta.training.usable);
    let doc = json_of(app.get(PATH).await).await;
    assert_eq!(doc["training_opt_in"], false);
    assert_eq!(doc["scheduled"], json!([]));
}

/// A choice made now cancels one scheduled earlier for a later instant: an
/// opt-out today is not undone by the opt-in set for next month.
async fn a_later_choice_cancels_one_still_scheduled(backend: Backend) {
    let t0 = datetime!(2026-06-01 12:00 UTC);
    let (clock, shared) = manual_clock(t0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    let next_month = t0 + time::Duration::days(30);
    let schedule =
        json!({"training_opt_in": true, "effective_at": next_month.format(&Rfc3339).unwrap()});
    let doc = json_of(put(&app, MANAGED_KEY, &schedule.to_string()).await).await;
    assert_eq!(doc["scheduled"].as_array().unwrap().len(), 1);
    clock.set(t0 + time::Duration::days(1));
    let doc = json_of(put(&app, MANAGED_KEY, r#"{"training_opt_in": false}"#).await).await;
    assert_eq!(doc["training_opt_in"], false);
    assert_eq!(doc["scheduled"], json!([]), "the opt-in no longer stands");
    clock.set(next_month + time::Duration::days(1));
    assert_eq!(
        tag(&app.chat(MANAGED_KEY, body()).await),
        owned("denied", "explicit_opt_out")
    );
    let doc = json_of(app.get(PATH).await).await;
    assert_eq!(doc["training_opt_in"], false);
    assert_eq!(
        doc["history"].as_array().unwrap().len(),
        2,
        "both kept in the history"
    );
}

/// The audit source of a change believes `x-forwarded-for` only from a
/// configured proxy; from anyone else it is the peer's address alone.
async fn the_audit_source_trusts_only_configured_proxies(backend: Backend) {
    for (server, believed) in [("", false), ("trusted_proxies = [\"127.0.0.0/8\"]", true)] {
        let builder = ConfigBuilder {
            server: server.into(),
            ..ConfigBuilder::default()
        };
        let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
        let response = app
            .client
            .put(app.url(PATH))
            .bearer_auth(MANAGED_KEY)
            .header("x-forwarded-for", "198.51.100.66, 203.0.113.9")
            .body(r#"{"training_opt_in": true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let entries = app.store.audit_entries(0, 100).await.unwrap();
        let source = &entries.last().unwrap().source;
        match believed {
            true => assert!(
                source.starts_with("203.0.113.9 (via 127.0.0.1:"),
                "{source}"
            ),
            false => {
                assert!(source.starts_with("127.0.0.1:"), "{source}");
                assert!(
                    !source.contains("203.0.113.9") && !source.contains("198.51"),
                    "{source}"
                );
            }
        }
    }
}

async fn bad_change_requests_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let past = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&Rfc3339)
        .unwrap();
    let cases = [
        ("not json".to_owned(), "JSON object"),
        (r#"{"training_opt_in": "yes"}"#.to_owned(), "invalid type"),
        (r#"{}"#.to_owned(), "missing field"),
        (
            r#"{"training_opt_in": true, "tenant": "beta"}"#.to_owned(),
            "unknown field `tenant`",
        ),
        (
            json!({"training_opt_in": true, "effective_at": past}).to_string(),
            "in the past",
        ),
        (
            r#"{"training_opt_in": true, "effective_at": "tomorrow"}"#.to_owned(),
            "effective_at",
        ),
    ];
    for (body, message) in cases {
        let response = put(&app, MANAGED_KEY, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_of(response).await;
        assert_eq!(error["error"]["code"], "invalid_request");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }

    let huge = format!(
        r#"{{"training_opt_in": true, "note": "{}"}}"#,
        "n".repeat(20_000)
    );
    assert_eq!(
        put(&app, MANAGED_KEY, &huge).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let response = app
        .client
        .post(app.url(PATH))
        .bearer_auth(MANAGED_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, PUT");

    let response = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_as(&app, "sk-unknown").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        put(&app, "cst_not_a_real_key", r#"{"training_opt_in": true}"#)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    assert!(app
        .store
        .consent_history(&custodian::domain::TenantId("acme".into()))
        .await
        .unwrap()
        .is_empty());
    assert!(app.store.audit_entries(0, 10).await.unwrap().is_empty());
}

async fn a_default_tenant_mapping_cannot_speak_for_the_tenant(backend: Backend) {
    let builder = ConfigBuilder {
        auth: r#"default_tenant = "acme""#.into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    // Proxying still works for the default tenant…
    assert_eq!(app.chat("sk-anyone", body()).await.status(), StatusCode::OK);
    // …but only a registered key reads or changes its consent.
    let response = put(&app, "sk-anyone", r#"{"training_opt_in": true}"#).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "key_not_registered"
    );
    let response = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&app, MANAGED_KEY).await.status(), StatusCode::OK);
}

/// Even a catch-all route never forwards the gateway's own namespace.
async fn the_gateway_namespace_is_never_forwarded(backend: Backend) {
    let builder = ConfigBuilder {
        routes: Some(
            r#"
[[routes]]
name = "everything"
prefix = "/"
upstream = "UPSTREAM_BASE"
profile = "api"
upstream_key = { env = "TEST_UPSTREAM_KEY" }
"#
            .into(),
        ),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    assert_eq!(app.get("/v1/models").await.status(), StatusCode::OK);
    let seen = app.upstream.mock.seen().len();
    for path in [
        "/custodian/v1/other",
        "/custodian/",
        "/custodian/v1/data-sharing/x",
    ] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(get_as(&app, MANAGED_KEY).await.status(), StatusCode::OK);
    assert_eq!(
        app.upstream.mock.seen().len(),
        seen,
        "nothing reached the upstream"
    );
}

both_stores!(
    the_gateway_namespace_is_never_forwarded,
    a_tenant_reads_and_changes_its_own_choice,
    a_pass_through_tenant_changes_only_its_own_choice,
    a_scheduled_change_applies_from_its_instant_and_never_rewrites_tags,
    a_later_choice_cancels_one_still_scheduled,
    the_audit_source_trusts_only_configured_proxies,
    bad_change_requests_are_refused_and_change_nothing,
    a_default_tenant_mapping_cannot_speak_for_the_tenant,
);
