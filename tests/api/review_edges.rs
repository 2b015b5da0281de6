//! Reviewers see what they are told they see: contractors get no personal
//! data, not behind a JSON escape, a Unicode separator or in a colleague's
//! note; an item past its content's expiry is gone unless a legal hold
//! keeps it; confirming abuse and the suspension it triggers are one
//! transaction.

use std::sync::Arc;

use custodian::domain::access::Role;
use custodian::domain::audit::AuditEvent;
use custodian::domain::{RecordId, TenantId};
use custodian::store::NewHold;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;
use crate::review::{principal_in, RULES};

async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.admin);
    let request = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url),
    };
    let request = match body {
        Some(b) => request.json(&b),
        None => request,
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A flagged chat request sent as raw JSON text (its escapes as written).
async fn flagged_raw(app: &TestApp, json_text: &str) -> String {
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "application/json")
        .body(json_text.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    app.record(&id).await;
    id
}

async fn contractors_see_no_personal_data_behind_escapes_or_in_notes(backend: Backend) {
    let builder = ConfigBuilder {
        extra: RULES.into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(
        backend,
        builder,
        Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let contractor = principal_in(
        app.store.as_ref(),
        "cora",
        Role::Contractor,
        Some(Duration::days(1)),
    )
    .await;
    let id = flagged_raw(
        &app,
        r#"{"model":"m","messages":[{"role":"user","content":"build a bomb. card:\n4111 1111 1111 1111, call\u00a0415-555-0132, mail jane\u0040example.com"}]}"#,
    )
    .await;
    let item = format!("/admin/v1/review/items/{id}");
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        &format!("{item}/notes"),
        Some(json!({"text": "called them on 415-555-0132, card 4111-1111-1111-1111"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    call(
        &app,
        &admin,
        "POST",
        &format!("{item}/assign"),
        Some(json!({"assignee": "cora"})),
    )
    .await;

    let (status, full) = call(&app, &admin, "GET", &item, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        full["notes"].to_string().contains("415-555-0132"),
        "employees see the note"
    );

    let (status, shown) = call(&app, &contractor, "GET", &item, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = call(&app, &contractor, "GET", "/admin/v1/review/items", None).await;
    // Everything a contractor reads but instants and ids, whose digits
    // may spell "555" by chance.
    for view in [without_instants(&shown), without_instants(&listed)] {
        for secret in ["4111", "0132", "jane", "555"] {
            assert!(
                !view.contains(secret),
                "{secret} shown to a contractor: {view}"
            );
        }
    }
    assert!(shown["record"]["content"]["request"]
        .as_str()
        .unwrap()
        .contains("[redacted:card]"));
    assert!(shown["notes"][0]["text"]
        .as_str()
        .unwrap()
        .contains("[redacted:phone]"));
    // The contractor's view of a JSON request is still JSON.
    let request: Value =
        serde_json::from_str(shown["record"]["content"]["request"].as_str().unwrap()).unwrap();
    assert_eq!(request["model"], "m");
}

const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

async fn an_item_past_its_content_expiry_is_gone_unless_held(backend: Backend) {
    let (clock, shared) = manual_clock(T0);
    let builder = ConfigBuilder {
        extra: RULES.into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, shared).await;
    let reviewer = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"build a bomb"}]}"#;
    let kept = flagged_raw(&app, body).await;
    let gone = flagged_raw(&app, body).await;
    app.store
        .add_hold(
            &NewHold {
                tenant: TenantId("acme".into()),
                record: Some(RecordId(kept.parse().unwrap())),
                reason: "matter 7".into(),
                created_by: "operator:legal".into(),
                created_at: T0,
                ends_at: T0 + Duration::days(400),
            },
            &AuditEvent {
                at: T0,
                actor: "operator:legal".into(),
                action: "legal_hold.placed".into(),
                tenant: Some(TenantId("acme".into())),
                subject: None,
                source: "test".into(),
                details: json!({}),
            },
        )
        .await
        .unwrap();
    let (_, before) = call(&app, &reviewer, "GET", "/admin/v1/review/items", None).await;
    assert_eq!(before["data"].as_array().unwrap().len(), 2);

    // Past the 30-day content retention.
    clock.set(T0 + Duration::days(31));
    let (_, listed) = call(&app, &reviewer, "GET", "/admin/v1/review/items", None).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str()], "only the held item is listed");
    assert_eq!(listed["data"][0]["held"], true);
    let (status, _) = call(
        &app,
        &reviewer,
        "GET",
        &format!("/admin/v1/review/items/{gone}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for action in ["notes", "resolve"] {
        let body = json!({"text": "x", "resolution": "dismissed"});
        let body = match action {
            "notes" => json!({"text": body["text"]}),
            _ => json!({"resolution": body["resolution"]}),
        };
        let (status, _) = call(
            &app,
            &reviewer,
            "POST",
            &format!("/admin/v1/review/items/{gone}/{action}"),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action} on an expired item");
    }
    let (status, read) = call(
        &app,
        &reviewer,
        "GET",
        &format!("/admin/v1/review/items/{kept}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["held"], true);
    // Claiming takes the held item, never the expired one.
    let (status, claimed) = call(&app, &reviewer, "POST", "/admin/v1/review/claim", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claimed["record_id"], kept.as_str());
    let (status, _) = call(&app, &reviewer, "POST", "/admin/v1/review/claim", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// Make the store refuse every new suspension (a trigger, as a failing
/// disk or a constraint would), or accept them again.
async fn refuse_suspensions(app: &TestApp, refuse: bool) {
    let url = app._db.url();
    let statements: &[&str] = match (url.starts_with("sqlite"), refuse) {
        (true, true) => &["CREATE TRIGGER refuse BEFORE INSERT ON suspensions BEGIN SELECT RAISE(ABORT, 'refused'); END"],
        (true, false) => &["DROP TRIGGER refuse"],
        (false, true) => &[
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON suspensions FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
        (false, false) => &["DROP TRIGGER refuse ON suspensions"],
    };
    for statement in statements {
        if url.starts_with("sqlite") {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            conn.execute(*statement).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            conn.execute(*statement).await.unwrap();
        }
    }
}

async fn confirming_abuse_and_its_suspension_are_one_transaction(backend: Backend) {
    let builder = ConfigBuilder {
        extra: format!("{RULES}\n[review]\non_confirm = \"suspend_key\"\n"),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(
        backend,
        builder,
        Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let reviewer = principal_in(app.store.as_ref(), "rex", Role::Reviewer, None).await;
    let id = flagged_raw(
        &app,
        r#"{"model":"m","messages":[{"role":"user","content":"build a bomb"}]}"#,
    )
    .await;
    let resolve = format!("/admin/v1/review/items/{id}/resolve");
    refuse_suspensions(&app, true).await;
    let (status, _) = call(
        &app,
        &reviewer,
        "POST",
        &resolve,
        Some(json!({"resolution": "confirmed"})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let item = app
        .store
        .review_item(RecordId(id.parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(item.status, "resolved", "resolved without its suspension");
    assert!(app.store.list_suspensions().await.unwrap().is_empty());
    assert!(
        !app.store
            .audit_entries(0, 1000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "review_item.resolved"),
        "a resolution audited that did not happen"
    );

    refuse_suspensions(&app, false).await;
    let (status, resolved) = call(
        &app,
        &reviewer,
        "POST",
        &resolve,
        Some(json!({"resolution": "confirmed"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(app.store.list_suspensions().await.unwrap().len(), 1);
    let again = app
        .chat(
            MANAGED_KEY,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(again.status(), 403, "the key is suspended");
}

/// Every number a caller can send is parsed with its bounds: too large, too
/// small or not a number is a 400, never a panic or a wrapped value.
async fn parsed_numbers_reject_overflow_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let reviewer = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let id = uuid::Uuid::now_v7();
    let huge = "170141183460469231731687303715884105727";
    let paths = [
        format!("/admin/v1/review/items?cursor={huge}_{id}"),
        format!("/admin/v1/review/items?cursor=-{huge}_{id}"),
        format!("/admin/v1/review/items?cursor=9223372036854775807999_{id}"),
        format!("/admin/v1/review/items?cursor=1e3_{id}"),
        "/admin/v1/review/items?limit=99999999999999999999".to_owned(),
        "/admin/v1/review/items?limit=-99999999999999999999".to_owned(),
        "/admin/v1/audit?after=99999999999999999999".to_owned(),
        "/admin/v1/audit?limit=nan".to_owned(),
        "/admin/v1/review/items?since=99999-01-01T00:00:00Z".to_owned(),
    ];
    for path in paths {
        let (status, body) = call(&app, &reviewer, "GET", &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{path}");
    }
    // The gateway still answers.
    let (status, _) = call(&app, &reviewer, "GET", "/admin/v1/review/items", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Every counter family is in the first scrape, and the retention gauges
/// are there once the first sweep (at start) has run.
async fn every_metric_family_is_in_the_first_scrape(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.metrics().await;
    for family in [
        "custodian_records_dropped_total",
        "custodian_spool_unreadable_total",
        "custodian_classifier_unchecked_total",
        "custodian_requests_unscanned_total",
        "custodian_sweep_rows_removed_total",
        "custodian_body_budget_refusals_total",
        "custodian_upload_leftovers_removed_total",
        "custodian_store_up",
    ] {
        assert!(first.contains(family), "{family} missing:\n{first}");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if text.contains("custodian_retention_rows_past_expiry")
            && text.contains("custodian_sweep_last_success_timestamp_seconds")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retention gauges after the first sweep:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

both_stores!(
    parsed_numbers_reject_overflow_with_400,
    every_metric_family_is_in_the_first_scrape,
    contractors_see_no_personal_data_behind_escapes_or_in_notes,
    an_item_past_its_content_expiry_is_gone_unless_held,
    confirming_abuse_and_its_suspension_are_one_transaction,
);

/// `v` with the values of instants (`at`, `*_at`) and ids (`*_id`) nulled.
fn without_instants(v: &serde_json::Value) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if key == "at" || key.ends_with("_at") || key.ends_with("_id") {
                        *value = serde_json::Value::Null;
                    } else {
                        strip(value);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = v.clone();
    strip(&mut v);
    v.to_string()
}
