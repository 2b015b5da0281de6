//! Erasure on request: a tenant's content, review items and file copies go
//! now (metadata too when asked), other tenants keep theirs, a legal hold
//! wins and is named, only admins may ask, and it is audited.

use std::sync::Arc;

use custodian::domain::access::Role;
use custodian::domain::clock::SystemClock;
use custodian::domain::RecordId;
use custodian::store::AuditFilter;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::files::{form, payload, stored_objects, upload};
use crate::helpers::*;
use crate::review::principal_in;

async fn erase_as(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/admin/v1/erasures", app.admin))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn chat(app: &TestApp, key: &str, text: &str) -> RecordId {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    RecordId(record_id(&app.chat(key, body).await).parse().unwrap())
}

async fn a_tenant_is_erased_but_what_a_hold_keeps(backend: Backend) {
    let builder = ConfigBuilder {
        extra: crate::review::RULES.into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let plain = chat(&app, MANAGED_KEY, "plain").await;
    let held = chat(&app, MANAGED_KEY, "held").await;
    let flagged = RecordId(crate::review::flagged(&app, "x").await.parse().unwrap());
    let other = chat(&app, PASSTHROUGH_KEY, "another tenant").await;
    let (status, _) = upload(&app, MANAGED_KEY, form("fine-tune", payload(2_000), true)).await;
    assert_eq!(status, 200);
    app.wait_for_records(5).await;
    assert!(!stored_objects(&app).is_empty(), "the fine-tune copy");
    let now = OffsetDateTime::now_utc();
    let hold = crate::attest::hold_record(app.store.as_ref(), held, "subpoena 42").await;

    let store = app.store.as_ref();
    let reviewer = principal_in(store, "rex", Role::Reviewer, None).await;
    let admin = principal_in(store, "ada", Role::Admin, None).await;
    let body = json!({"tenant": "acme", "reason": "GDPR request 7"});
    assert_eq!(erase_as(&app, &reviewer, body.clone()).await.0, 403);
    let (status, _) = erase_as(&app, &admin, json!({"tenant": "nobody", "reason": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        erase_as(&app, &admin, json!({"tenant": "acme", "reason": " "}))
            .await
            .0,
        400
    );

    let (status, answer) = erase_as(&app, &admin, body).await;
    assert_eq!(status, 200, "{answer}");
    let erased = &answer["erased"];
    assert_eq!(erased["content_rows"], 3, "{answer}");
    assert_eq!(erased["review_items"], 1, "{answer}");
    assert_eq!(erased["file_copies"], 1, "{answer}");
    assert_eq!(erased["metadata_rows"], 0, "metadata is kept by default");
    assert_eq!(erased["kept"][0]["hold_id"], hold, "{answer}");
    assert_eq!(erased["kept"][0]["reason"], "subpoena 42");

    for id in [plain, flagged] {
        let record = store.get_record(id).await.unwrap().expect("metadata kept");
        assert!(record.content.is_none(), "content of {id} erased");
    }
    assert!(store.review_item(flagged).await.unwrap().is_none());
    let kept = store.get_record(held).await.unwrap().unwrap();
    assert!(kept.content.is_some(), "the hold wins");
    let untouched = store.get_record(other).await.unwrap().unwrap();
    assert!(
        untouched.content.is_some(),
        "another tenant keeps its content"
    );
    assert_eq!(
        stored_objects(&app),
        Vec::<std::path::PathBuf>::new(),
        "blob removed"
    );
    let entries = store
        .query_audit(&AuditFilter {
            action: Some("tenant.erased".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "principal:ada");
    let details: Value = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(details["details"]["reason"], "GDPR request 7");

    // With metadata: everything of the tenant but the held record.
    let (_, answer) = erase_as(
        &app,
        &admin,
        json!({"tenant": "acme", "reason": "GDPR request 7, metadata", "include_metadata": true}),
    )
    .await;
    assert_eq!(answer["erased"]["content_rows"], 0, "{answer}");
    assert!(
        answer["erased"]["metadata_rows"].as_u64().unwrap() >= 3,
        "{answer}"
    );
    assert!(store.get_record(plain).await.unwrap().is_none());
    assert!(store.get_record(held).await.unwrap().is_some());
    assert!(store.get_record(other).await.unwrap().is_some());

    // The erasures appear in the attestation, which still holds.
    let report = custodian::attest::attest(
        &custodian::attest::Sources {
            config: &app.config,
            store,
            keys: None,
        },
        &custodian::attest::Period {
            since: now - Duration::hours(1),
            until: OffsetDateTime::now_utc(),
            tenant: None,
        },
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(report.erasures.len(), 2);
    let failing: Vec<_> = report.failing().map(|c| c.name).collect();
    assert!(report.holds, "{failing:?}");
}

/// With encryption on, erasing a tenant destroys its key: a backup taken
/// before the erasure, restored, opens none of that tenant's content and
/// all of the others' (`scripts/shred-proof.sh erased`, the real binary).
async fn erasure_reaches_a_backup_taken_before(backend: Backend) {
    use crate::encryption::{builder, operator_config, shred_proof, KeysIn, TestKeyStore};
    let key_store = TestKeyStore::new(KeysIn::Dir).await;
    let app = spawn_app_with(backend, builder(&key_store), Arc::new(SystemClock)).await;
    chat(&app, MANAGED_KEY, "acme-marker").await;
    chat(&app, PASSTHROUGH_KEY, "beta-marker").await;
    app.wait_for_records(2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = operator_config(dir.path(), &key_store, app._db.url());
    let backup = dir.path().join("backup");
    let (ok, text) = shred_proof(&["backup".as_ref(), config.as_os_str(), backup.as_os_str()]);
    assert!(ok, "{text}");
    let admin_url = crate::helpers::pg_admin_url();
    let erased_check = || {
        shred_proof(&[
            "erased".as_ref(),
            config.as_os_str(),
            backup.as_os_str(),
            "acme".as_ref(),
            admin_url.as_ref(),
        ])
    };
    let (ok, text) = erased_check();
    assert!(!ok, "the control: acme not erased yet\n{text}");
    assert!(
        text.contains("bodies of erased tenant acme still readable: 1"),
        "{text}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--config")
        .arg(&config)
        .args([
            "erase", "--tenant", "acme", "--reason", "GDPR 9", "--actor", "dpo",
        ])
        .env("TEST_KEK", TEST_KEK)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("tenant key destroyed"), "{said}");

    let (ok, text) = erased_check();
    assert!(ok, "{text}");
    assert!(text.contains("erased (tenant key destroyed): 1"), "{text}");
    assert!(
        text.contains("readable with the key store: 1"),
        "beta's row\n{text}"
    );
}

/// The end-user id a caller sends is kept only as a keyed hash, and one end
/// user's content can be erased by it, the tenant's other users untouched.
async fn an_end_user_is_erased_by_the_id_the_caller_sent(backend: Backend) {
    let builder = ConfigBuilder {
        auth: "end_user_key = { env = \"TEST_KEK\" }".into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let send = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        app.chat(MANAGED_KEY, body)
    };
    let alice = "alice@example.com";
    let first = RecordId(
        record_id(&send(json!({"user": alice})).await)
            .parse()
            .unwrap(),
    );
    let second = RecordId(
        record_id(&send(json!({"safety_identifier": alice})).await)
            .parse()
            .unwrap(),
    );
    let bob = RecordId(
        record_id(&send(json!({"user": "bob"})).await)
            .parse()
            .unwrap(),
    );
    let nobody = RecordId(record_id(&send(json!({})).await).parse().unwrap());
    app.wait_for_records(4).await;
    let store = app.store.as_ref();
    let hash_of = |id| async move {
        store
            .get_record(id)
            .await
            .unwrap()
            .unwrap()
            .meta
            .end_user_hash
    };
    let expected = custodian::domain::records::end_user_hash(
        TEST_KEK.as_bytes(),
        &custodian::domain::TenantId("acme".into()),
        alice,
    );
    assert_eq!(hash_of(first).await.as_deref(), Some(expected.as_str()));
    assert_eq!(hash_of(second).await, hash_of(first).await);
    assert_ne!(hash_of(bob).await, hash_of(first).await);
    assert_eq!(hash_of(nobody).await, None);

    let admin = principal_in(store, "ada", Role::Admin, None).await;
    let (status, answer) = erase_as(
        &app,
        &admin,
        json!({"tenant": "acme", "reason": "DSAR 3", "end_user": alice}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["erased"]["content_rows"], 2, "{answer}");
    for (id, kept) in [(first, false), (second, false), (bob, true), (nobody, true)] {
        let record = store.get_record(id).await.unwrap().expect("metadata kept");
        assert_eq!(record.content.is_some(), kept, "{id}");
    }
}

/// Without `auth.end_user_key` no end-user id is kept, and an erasure by
/// end user says why it cannot be done.
async fn without_a_key_no_end_user_is_kept_or_erasable(backend: Backend) {
    let app = spawn_app(backend).await;
    let body =
        json!({"model": "m", "user": "carol", "messages": [{"role": "user", "content": "x"}]});
    let id = RecordId(
        record_id(&app.chat(MANAGED_KEY, body).await)
            .parse()
            .unwrap(),
    );
    app.wait_for_records(1).await;
    let record = app.store.get_record(id).await.unwrap().unwrap();
    assert_eq!(record.meta.end_user_hash, None);
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let (status, answer) = erase_as(
        &app,
        &admin,
        json!({"tenant": "acme", "reason": "DSAR 4", "end_user": "carol"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("end_user_key"), "{answer}");
}

both_stores!(
    a_tenant_is_erased_but_what_a_hold_keeps,
    erasure_reaches_a_backup_taken_before,
    an_end_user_is_erased_by_the_id_the_caller_sent,
    without_a_key_no_end_user_is_kept_or_erasable,
);
