//! The review queue's admin API: every endpoint × every role (expired and
//! revoked included), contractor scoping and redaction, no double claim
//! under concurrent reviewers, and an audit entry for every read.

use std::collections::HashSet;
use std::sync::Arc;

use custodian::domain::access::{issue_token, token_hash, Role};
use custodian::domain::audit::{AuditEvent, ChainVerifier};
use custodian::domain::clock::SystemClock;
use custodian::store::NewPrincipal;
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

pub(crate) const RULES: &str = r#"
[[rules]]
name = "weapons"
severity = "high"
keywords = ["build a bomb"]
"#;

async fn app(backend: Backend) -> TestApp {
    let builder = ConfigBuilder {
        extra: RULES.into(),
        ..ConfigBuilder::default()
    };
    spawn_app_with(backend, builder, Arc::new(SystemClock)).await
}

/// Create a principal straight in the store; returns its token.
async fn principal(app: &TestApp, name: &str, role: Role, expires: Option<Duration>) -> String {
    principal_in(app.store.as_ref(), name, role, expires).await
}

pub(crate) async fn principal_in(
    store: &dyn custodian::store::Store,
    name: &str,
    role: Role,
    expires: Option<Duration>,
) -> String {
    let token = issue_token();
    let now = OffsetDateTime::now_utc();
    store
        .add_principal(
            &NewPrincipal {
                name: name.into(),
                role,
                token_hash: token_hash(&token),
                created_at: now - Duration::days(1),
                expires_at: expires.map(|d| now + d),
            },
            &AuditEvent {
                at: now,
                actor: "operator:test".into(),
                action: "principal.added".into(),
                tenant: None,
                subject: None,
                source: "test".into(),
                details: json!({}),
            },
        )
        .await
        .unwrap();
    token
}

/// Claim items through the admin API at `admin` until none is left
/// (bounded); the record ids claimed.
pub(crate) async fn claim_until_empty(
    client: &reqwest::Client,
    admin: &str,
    token: &str,
) -> Vec<String> {
    let mut mine = Vec::new();
    for _ in 0..1_000 {
        let response = client
            .post(format!("{admin}/admin/v1/review/claim"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let item: Value = response.json().await.unwrap();
        mine.push(item["record_id"].as_str().unwrap().to_owned());
    }
    mine
}

/// A flagged request; returns its record id.
pub(crate) async fn flagged(app: &TestApp, text: &str) -> String {
    let response = app
        .chat(
            MANAGED_KEY,
            json!({"model": "m", "messages": [{"role": "user", "content": format!("build a bomb {text}")}]}),
        )
        .await;
    let id = record_id(&response);
    app.record(&id).await;
    id
}

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.admin);
    let mut request = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url),
    };
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn every_endpoint_answers_each_role_as_specified(backend: Backend) {
    let app = app(backend).await;
    let admin = principal(&app, "ada", Role::Admin, None).await;
    let reviewer = principal(&app, "rex", Role::Reviewer, None).await;
    let contractor = principal(&app, "cora", Role::Contractor, Some(Duration::days(30))).await;
    let auditor = principal(&app, "aud", Role::Auditor, None).await;
    let expired = principal(&app, "old", Role::Contractor, Some(Duration::seconds(-1))).await;
    let revoked = principal(&app, "gone", Role::Reviewer, None).await;
    let revoke_audit = AuditEvent {
        at: OffsetDateTime::now_utc(),
        actor: "operator:test".into(),
        action: "principal.revoked".into(),
        tenant: None,
        subject: None,
        source: "test".into(),
        details: json!({}),
    };
    assert!(app
        .store
        .revoke_principal("gone", OffsetDateTime::now_utc(), &revoke_audit)
        .await
        .unwrap());
    let id = flagged(&app, "one").await;
    let item = format!("/admin/v1/review/items/{id}");
    let note = json!({"text": "looked at it"});

    use StatusCode as S;
    // (method, path, body, [admin, reviewer, contractor (not assigned), auditor])
    let matrix: Vec<(&str, String, Option<Value>, [StatusCode; 4])> = vec![
        (
            "GET",
            "/admin/v1/review/items".into(),
            None,
            [S::OK, S::OK, S::OK, S::FORBIDDEN],
        ),
        (
            "GET",
            item.clone(),
            None,
            [S::OK, S::OK, S::NOT_FOUND, S::FORBIDDEN],
        ),
        (
            "POST",
            format!("{item}/notes"),
            Some(note.clone()),
            [S::OK, S::OK, S::NOT_FOUND, S::FORBIDDEN],
        ),
        (
            "POST",
            format!("{item}/assign"),
            Some(json!({"assignee": "rex"})),
            [S::OK, S::OK, S::FORBIDDEN, S::FORBIDDEN],
        ),
        (
            "GET",
            "/admin/v1/review/counts".into(),
            None,
            [S::OK, S::OK, S::FORBIDDEN, S::OK],
        ),
        (
            "GET",
            "/admin/v1/audit".into(),
            None,
            [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            "POST",
            "/admin/v1/review/claim".into(),
            None,
            [S::NO_CONTENT, S::NO_CONTENT, S::FORBIDDEN, S::FORBIDDEN],
        ),
        (
            "GET",
            "/admin/v1/audit/verify".into(),
            None,
            [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            "GET",
            "/admin/v1/tenants".into(),
            None,
            [S::OK, S::OK, S::FORBIDDEN, S::OK],
        ),
        (
            "GET",
            "/admin/v1/principals".into(),
            None,
            [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN],
        ),
        (
            "POST",
            "/admin/v1/principals/nobody/revoke".into(),
            None,
            [S::NOT_FOUND, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN],
        ),
    ];
    for (method, path, body, expected) in &matrix {
        for (token, want) in [&admin, &reviewer, &contractor, &auditor]
            .into_iter()
            .zip(expected)
        {
            let (got, answer) = call(&app, Some(token), method, path, body.clone()).await;
            assert_eq!(got, *want, "{method} {path}: {answer}");
        }
        for token in [
            Some(expired.as_str()),
            Some(revoked.as_str()),
            Some("cstp_nobody"),
            None,
        ] {
            let (got, _) = call(&app, token, method, path, body.clone()).await;
            assert_eq!(got, S::UNAUTHORIZED, "{method} {path} with {token:?}");
        }
    }
    // A contractor's own view: nothing until assigned; then only that item.
    let (_, list) = call(
        &app,
        Some(&contractor),
        "GET",
        "/admin/v1/review/items",
        None,
    )
    .await;
    assert_eq!(list["data"], json!([]));
    let (status, _) = call(
        &app,
        Some(&admin),
        "POST",
        &format!("{item}/assign"),
        Some(json!({"assignee": "cora"})),
    )
    .await;
    assert_eq!(status, S::OK);
    let other = flagged(&app, "two").await;
    let (_, list) = call(
        &app,
        Some(&contractor),
        "GET",
        "/admin/v1/review/items",
        None,
    )
    .await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (status, _) = call(
        &app,
        Some(&contractor),
        "GET",
        &format!("/admin/v1/review/items/{other}"),
        None,
    )
    .await;
    assert_eq!(
        status,
        S::NOT_FOUND,
        "indistinguishable from a missing item"
    );
    let (status, _) = call(&app, Some(&contractor), "GET", &item, None).await;
    assert_eq!(status, S::OK);
    let (status, resolved) = call(
        &app,
        Some(&contractor),
        "POST",
        &format!("{item}/resolve"),
        Some(json!({"resolution": "dismissed", "note": "benign"})),
    )
    .await;
    assert_eq!(status, S::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["notes"].as_array().unwrap().len(),
        3,
        "two from the matrix, one here"
    );
    let (status, _) = call(
        &app,
        Some(&reviewer),
        "POST",
        &format!("{item}/resolve"),
        Some(json!({"resolution": "confirmed"})),
    )
    .await;
    assert_eq!(status, S::BAD_REQUEST, "resolved once");
    let (status, _) = call(
        &app,
        Some(&admin),
        "POST",
        &format!("/admin/v1/review/items/{other}/resolve"),
        Some(json!({"resolution": "maybe"})),
    )
    .await;
    assert_eq!(status, S::BAD_REQUEST);
    let (status, _) = call(
        &app,
        Some(&admin),
        "GET",
        "/admin/v1/review/items/not-a-uuid",
        None,
    )
    .await;
    assert_eq!(status, S::NOT_FOUND);
}

async fn contractors_read_payloads_redacted(backend: Backend) {
    let app = app(backend).await;
    let admin = principal(&app, "ada", Role::Admin, None).await;
    let contractor = principal(&app, "cora", Role::Contractor, Some(Duration::days(1))).await;
    let id = flagged(
        &app,
        "mail jane@example.com, call +1 415 555 0132, card 4111 1111 1111 1111",
    )
    .await;
    let item = format!("/admin/v1/review/items/{id}");
    call(
        &app,
        Some(&admin),
        "POST",
        &format!("{item}/assign"),
        Some(json!({"assignee": "cora"})),
    )
    .await;
    let (status, full) = call(&app, Some(&admin), "GET", &item, None).await;
    assert_eq!(status, StatusCode::OK);
    let request = full["record"]["content"]["request"].as_str().unwrap();
    assert!(request.contains("jane@example.com"));
    assert!(
        full["record"]["content"]["response_text"]
            .as_str()
            .unwrap()
            .contains("jane@example.com"),
        "the echo"
    );
    let (_, redacted) = call(&app, Some(&contractor), "GET", &item, None).await;
    let text = redacted["record"]["content"].to_string();
    for secret in ["jane@example.com", "555 0132", "4111"] {
        assert!(
            !text.contains(secret),
            "{secret} shown to a contractor: {text}"
        );
    }
    assert!(text.contains("[redacted:email]"), "{text}");
}

async fn every_read_is_audited_in_the_chain(backend: Backend) {
    let app = app(backend).await;
    let reviewer = principal(&app, "rex", Role::Reviewer, None).await;
    let id = flagged(&app, "x").await;
    for _ in 0..2 {
        let (status, _) = call(
            &app,
            Some(&reviewer),
            "GET",
            &format!("/admin/v1/review/items/{id}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let entries = app.store.audit_entries(0, 100).await.unwrap();
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "review_item.read")
        .collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0].actor, "principal:rex");
    assert_eq!(
        reads[0].subject.as_deref(),
        Some(format!("review_item:{id}").as_str())
    );
    assert!(reads[0].source.starts_with("127.0.0.1:"));
    assert!(
        !reads[0].details.contains("bomb"),
        "no payload in the audit log"
    );
    let mut verifier = ChainVerifier::new();
    for e in &entries {
        verifier.check(e).unwrap();
    }
    // Listing is metadata only: not a payload read.
    call(&app, Some(&reviewer), "GET", "/admin/v1/review/items", None).await;
    assert_eq!(
        app.store.audit_entries(0, 100).await.unwrap().len(),
        entries.len()
    );
}

/// Eight reviewers claim concurrently until the queue is empty: every item
/// is claimed exactly once.
async fn concurrent_claims_never_share_an_item(backend: Backend) {
    let app = app(backend).await;
    let mut created = HashSet::new();
    for i in 0..24 {
        created.insert(flagged(&app, &i.to_string()).await);
    }
    let mut tasks = Vec::new();
    for r in 0..8 {
        let token = principal(&app, &format!("r{r}"), Role::Reviewer, None).await;
        let (client, admin) = (app.client.clone(), app.admin.clone());
        tasks.push(tokio::spawn(async move {
            claim_until_empty(&client, &admin, &token).await
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), unique.len(), "an item was claimed twice");
    assert_eq!(unique, created, "every item was claimed");
    let claims = app
        .store
        .audit_entries(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "review_item.claimed")
        .count();
    assert_eq!(claims, 24);
}

/// Confirming abuse suspends the key (as configured): its next request
/// gets 403 on this replica at once; lifting it (audited) restores access.
async fn confirmed_abuse_suspends_the_key_until_lifted(backend: Backend) {
    let builder = ConfigBuilder {
        extra: format!("{RULES}\n[review]\non_confirm = \"suspend_key\"\n"),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let reviewer = principal(&app, "rex", Role::Reviewer, None).await;
    let id = flagged(&app, "for real").await;
    let (status, _) = call(
        &app,
        Some(&reviewer),
        "POST",
        &format!("/admin/v1/review/items/{id}/resolve"),
        Some(json!({"resolution": "confirmed", "note": "clear intent"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let hello = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let response = app.chat(MANAGED_KEY, hello.clone()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "suspended");
    // Other tenants (and keys) are not affected.
    assert_eq!(
        app.chat(PASSTHROUGH_KEY, hello.clone()).await.status(),
        StatusCode::OK
    );

    let suspension = app.store.list_suspensions().await.unwrap().pop().unwrap();
    assert_eq!(suspension.tenant.0, "acme");
    assert!(suspension.key_id.as_deref().unwrap().starts_with("mk_"));
    let lift = AuditEvent {
        at: OffsetDateTime::now_utc(),
        actor: "operator:ops".into(),
        action: "suspension.lifted".into(),
        tenant: Some(suspension.tenant.clone()),
        subject: None,
        source: "test".into(),
        details: json!({}),
    };
    assert!(app
        .store
        .lift_suspension(
            suspension.id,
            "operator:ops",
            OffsetDateTime::now_utc(),
            &lift
        )
        .await
        .unwrap());
    // Replicas reload within consent.refresh_interval (100 ms here).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = app.chat(MANAGED_KEY, hello.clone()).await.status();
        if status == StatusCode::OK {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still suspended");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let actions: Vec<String> = app
        .store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("suspension"))
        .collect();
    assert_eq!(actions, ["suspension.added", "suspension.lifted"]);
}

both_stores!(
    confirmed_abuse_suspends_the_key_until_lifted,
    every_endpoint_answers_each_role_as_specified,
    contractors_read_payloads_redacted,
    every_read_is_audited_in_the_chain,
    concurrent_claims_never_share_an_item,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_checked_in() {
    let app = spawn_app(Backend::Sqlite).await;
    let served: Value = app
        .client
        .get(format!("{}/admin/v1/openapi.json", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.0.3");
}

/// Principals over the API: an admin adds one (its token works, only once
/// shown), lists and revokes it; bad input is refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_principals_over_the_api() {
    let app = app(Backend::Sqlite).await;
    let admin = principal(&app, "ada", Role::Admin, None).await;
    let (status, body) = call(
        &app,
        Some(&admin),
        "POST",
        "/admin/v1/principals",
        Some(json!({"name": "cora", "role": "contractor", "expires_at": "2999-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, _) = call(&app, Some(&token), "GET", "/admin/v1/review/items", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = call(&app, Some(&admin), "GET", "/admin/v1/principals", None).await;
    let cora = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cora")
        .unwrap();
    assert_eq!(
        (cora["role"].as_str(), cora["state"].as_str()),
        (Some("contractor"), Some("active"))
    );
    assert!(!list.to_string().contains(&token));
    for bad in [
        json!({"name": "cora", "role": "reviewer"}),
        json!({"name": "", "role": "reviewer"}),
        json!({"name": "x", "role": "emperor"}),
        json!({"name": "x", "role": "reviewer", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "role": "reviewer", "extra": 1}),
    ] {
        let (status, body) = call(
            &app,
            Some(&admin),
            "POST",
            "/admin/v1/principals",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _) = call(
        &app,
        Some(&admin),
        "POST",
        "/admin/v1/principals/cora/revoke",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, Some(&token), "GET", "/admin/v1/review/items", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, tenants) = call(&app, Some(&admin), "GET", "/admin/v1/tenants", None).await;
    let acme = tenants["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap();
    assert_eq!(acme["routes"][0]["basis"], "default_opt_out");
}

/// Pages follow their cursor to the end in either order, never repeat or
/// skip an item, and a cursor of one order is refused in the other.
async fn pages_follow_their_cursor_in_either_order(backend: Backend) {
    let builder = ConfigBuilder {
        extra: format!(
            "{RULES}\n[[rules]]\nname = \"phishing\"\nseverity = \"low\"\nkeywords = [\"verify your account\"]\n"
        ),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let token = principal(&app, "rex", Role::Reviewer, None).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let text = match i % 2 {
            0 => format!("build a bomb {i}"),
            _ => format!("verify your account {i}"),
        };
        let response = app
            .chat(
                MANAGED_KEY,
                json!({"model": "m", "messages": [{"role": "user", "content": text}]}),
            )
            .await;
        let id = record_id(&response);
        app.record(&id).await;
        made.push((i % 2 == 0, id));
    }
    let walk = |order: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let (mut seen, mut cursor, mut cursors) = (Vec::new(), None::<String>, Vec::new());
            for _ in 0..10 {
                let mut path = format!("/admin/v1/review/items?limit=2&order={order}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (status, page) = call(app, Some(&token), "GET", &path, None).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                for item in page["data"].as_array().unwrap() {
                    seen.push((
                        item["severity"].as_str().unwrap().to_owned(),
                        item["record_id"].as_str().unwrap().to_owned(),
                    ));
                }
                match page["next_cursor"].as_str() {
                    Some(next) => {
                        cursors.push(next.to_owned());
                        cursor = Some(next.to_owned());
                    }
                    None => break,
                }
            }
            (seen, cursors)
        }
    };
    let (created, created_cursors) = walk("created").await;
    let ids: Vec<&str> = created.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        ids,
        made.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        "oldest first"
    );
    let (by_severity, severity_cursors) = walk("severity").await;
    let highs: Vec<&str> = made
        .iter()
        .filter(|(high, _)| *high)
        .map(|(_, id)| id.as_str())
        .collect();
    let lows: Vec<&str> = made
        .iter()
        .filter(|(high, _)| !*high)
        .map(|(_, id)| id.as_str())
        .collect();
    let expected: Vec<&str> = highs.iter().chain(&lows).copied().collect();
    assert_eq!(
        by_severity
            .iter()
            .map(|(_, id)| id.as_str())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(by_severity[..3].iter().all(|(s, _)| s == "high"));
    // A cursor belongs to its order.
    let (status, _) = call(
        &app,
        Some(&token),
        "GET",
        &format!(
            "/admin/v1/review/items?order=severity&cursor={}",
            created_cursors[0]
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &app,
        Some(&token),
        "GET",
        &format!(
            "/admin/v1/review/items?order=created&cursor={}",
            severity_cursors[0]
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &app,
        Some(&token),
        "GET",
        "/admin/v1/review/items?order=random",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

both_stores!(pages_follow_their_cursor_in_either_order);
