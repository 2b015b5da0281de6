//! One conformance suite for both stores.

use custodian::domain::records::{Record, RecordContent, RecordMeta, Usage};
use custodian::domain::{
    ConsentEvent, KeyId, Outcome, RecordId, TenantId, TrainingBasis, TrainingTag,
};
use custodian::store::{self, Store};
use time::macros::datetime;
use time::Duration;

use crate::helpers::*;

pub(crate) async fn open(backend: Backend) -> (TestDb, std::sync::Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = connect_to(db.url()).await;
    (db, store)
}

/// A store of our own on `url`, migrated.
pub(crate) async fn connect_to(url: &str) -> std::sync::Arc<dyn Store> {
    let config = custodian::config::DatabaseConfig {
        url: url.to_owned(),
        migrate_on_start: true,
        max_connections: 4,
        connect_timeout: std::time::Duration::from_secs(5),
        partitions_ahead: std::time::Duration::from_secs(86_400),
    };
    let store = store::connect(&config).await.unwrap();
    store.migrate().await.unwrap();
    store
}

pub(crate) fn sample(
    tenant: &str,
    received_at: time::OffsetDateTime,
    with_content: bool,
) -> Record {
    let meta = RecordMeta {
        id: RecordId::new(),
        request_id: "req-1".into(),
        tenant: TenantId(tenant.into()),
        key_id: KeyId("mk_abc".into()),
        route: "openai".into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        status: 200,
        model: Some("gpt-x".into()),
        usage: Usage {
            prompt_tokens: Some(1),
            completion_tokens: None,
            total_tokens: Some(1),
        },
        streamed: true,
        outcome: Outcome::ClientDisconnected,
        total_us: 1234,
        upstream_ttfb_us: Some(100),
        upstream_total_us: None,
        request_bytes: 10,
        response_bytes: 20,
        training: TrainingTag {
            usable: true,
            basis: TrainingBasis::ExplicitOptIn,
        },
        profile: "api".into(),
        policy_version: "pv_1".into(),
        zero_data_retention: !with_content,
        received_at,
        content_expires_at: with_content.then(|| received_at + Duration::days(30)),
        expires_at: received_at + Duration::days(365),
        end_user_hash: None,
    };
    let content = with_content.then(|| RecordContent {
        request_body: b"{\"a\":1}".to_vec(),
        request_truncated: false,
        response_body: vec![0, 159, 146, 150, 255],
        response_truncated: true,
        expires_at: received_at + Duration::days(30),
        sealed: false,
        compressed: false,
    });
    Record {
        meta,
        content,
        review: None,
    }
}

async fn records_round_trip_exactly(backend: Backend) {
    let (_db, store) = open(backend).await;
    let now = datetime!(2026-11-26 10:00:00.123456 UTC);
    store
        .prepare_partitions(now, now + Duration::days(31), now + Duration::days(366))
        .await
        .unwrap();
    let with = sample("acme", now, true);
    let without = sample("acme", now + Duration::seconds(1), false);
    store
        .insert_records(&[with.clone(), without.clone()])
        .await
        .unwrap();
    assert_eq!(store.get_record(with.meta.id).await.unwrap().unwrap(), with);
    assert_eq!(
        store.get_record(without.meta.id).await.unwrap().unwrap(),
        without
    );
    assert!(store.get_record(RecordId::new()).await.unwrap().is_none());
    let listed = store
        .list_records(&TenantId("acme".into()), 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![without.meta.clone(), with.meta.clone()]);
}

async fn inserting_a_batch_twice_stores_it_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let batch: Vec<Record> = (0..50)
        .map(|i| sample("t", now + Duration::milliseconds(i), i % 2 == 0))
        .collect();
    store.insert_records(&batch).await.unwrap();
    store.insert_records(&batch).await.unwrap();
    assert_eq!(store.count_records().await.unwrap(), 50);
}

async fn records_beyond_prepared_partitions_are_still_stored(backend: Backend) {
    let (_db, store) = open(backend).await;
    // No partitions prepared at all: the store makes room itself.
    let far = datetime!(2031-02-03 04:05:06 UTC);
    let record = sample("acme", far, true);
    store
        .insert_records(std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(
        store.get_record(record.meta.id).await.unwrap().unwrap(),
        record
    );
}

async fn consent_events_are_append_only_and_ordered(backend: Backend) {
    let (_db, store) = open(backend).await;
    let t = datetime!(2025-01-01 00:00 UTC);
    let mk = |tenant: &str, opted_in, days| ConsentEvent {
        tenant: TenantId(tenant.into()),
        opted_in,
        effective_at: t + Duration::days(days),
        recorded_at: t,
        actor: "ops@example.com".into(),
        source: "contract".into(),
        note: Some("MSA §4".into()),
    };
    let first = append_consent(&*store, &mk("acme", true, 0)).await.unwrap();
    let second = append_consent(&*store, &mk("beta", false, 1))
        .await
        .unwrap();
    let third = append_consent(&*store, &mk("acme", false, 2))
        .await
        .unwrap();
    assert!(first < second && second < third);
    let after_first = store.consent_events_after(first).await.unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![second, third]
    );
    let history = store
        .consent_history(&TenantId("acme".into()))
        .await
        .unwrap();
    assert_eq!(history, vec![mk("acme", true, 0), mk("acme", false, 2)]);
}

async fn consent_rows_cannot_be_rewritten(backend: Backend) {
    let (db, store) = open(backend).await;
    let t = datetime!(2025-01-01 00:00 UTC);
    append_consent(
        &*store,
        &ConsentEvent {
            tenant: TenantId("acme".into()),
            opted_in: true,
            effective_at: t,
            recorded_at: t,
            actor: "a".into(),
            source: "s".into(),
            note: None,
        },
    )
    .await
    .unwrap();
    let (update, delete) = (
        "UPDATE consent_events SET opted_in = false",
        "DELETE FROM consent_events",
    );
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            assert!(sqlx::query(update).execute(&pool).await.is_err());
            assert!(sqlx::query(delete).execute(&pool).await.is_err());
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
            assert!(sqlx::query(update).execute(&pool).await.is_err());
            assert!(sqlx::query(delete).execute(&pool).await.is_err());
        }
    }
    assert!(
        store
            .consent_history(&TenantId("acme".into()))
            .await
            .unwrap()[0]
            .opted_in
    );
}

fn audit_event(n: usize) -> custodian::domain::audit::AuditEvent {
    custodian::domain::audit::AuditEvent {
        at: datetime!(2025-01-01 00:00 UTC) + Duration::seconds(n as i64),
        actor: format!("operator:o{n}"),
        action: "test.appended".into(),
        tenant: n.is_multiple_of(2).then(|| TenantId("acme".into())),
        subject: None,
        source: "test".into(),
        details: serde_json::json!({"n": n, "text": "ünïcødé \u{0}"}),
    }
}

/// Appenders racing on several connections still form one unbroken chain.
async fn concurrent_audit_appends_form_one_chain(backend: Backend) {
    let (db, store) = open(backend).await;
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move { store.append_audit(&audit_event(n)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=24).collect::<Vec<i64>>());
    let entries = store.audit_entries(0, 1_000).await.unwrap();
    let mut verifier = custodian::domain::audit::ChainVerifier::new();
    for e in &entries {
        verifier.check(e).unwrap();
    }
    assert_eq!(verifier.checked(), 24);
    // Paging returns the rest after a sequence number.
    assert_eq!(store.audit_entries(20, 100).await.unwrap().len(), 4);

    // Rows cannot be rewritten or removed; an edit made anyway (trigger
    // dropped by someone with the rights) is caught by verification.
    let update = "UPDATE audit_log SET actor = 'someone else' WHERE seq = 3";
    let delete = "DELETE FROM audit_log WHERE seq = 3";
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
            assert!(sqlx::query(update).execute(&pool).await.is_err());
            assert!(sqlx::query(delete).execute(&pool).await.is_err());
            sqlx::query("DROP TRIGGER audit_log_no_update ON audit_log")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(update).execute(&pool).await.unwrap();
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(db.url()).await.unwrap();
            assert!(sqlx::query(update).execute(&pool).await.is_err());
            assert!(sqlx::query(delete).execute(&pool).await.is_err());
            sqlx::query("DROP TRIGGER audit_log_no_update")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(update).execute(&pool).await.unwrap();
        }
    }
    let entries = store.audit_entries(0, 1_000).await.unwrap();
    let mut verifier = custodian::domain::audit::ChainVerifier::new();
    let broken = entries.iter().find_map(|e| verifier.check(e).err());
    assert_eq!(
        broken,
        Some(custodian::domain::audit::ChainBreak::Content { seq: 3 })
    );
}

async fn migrations_are_idempotent(backend: Backend) {
    let (_db, store) = open(backend).await;
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

both_stores!(
    records_round_trip_exactly,
    inserting_a_batch_twice_stores_it_once,
    records_beyond_prepared_partitions_are_still_stored,
    consent_events_are_append_only_and_ordered,
    consent_rows_cannot_be_rewritten,
    concurrent_audit_appends_form_one_chain,
    migrations_are_idempotent,
);

/// One record the database refuses (PostgreSQL text cannot hold NUL) must
/// cost only itself: the records around it are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_isolates_a_record_the_store_refuses() {
    let (_db, store) = open(Backend::Postgres).await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let good_a = sample("acme", now, true);
    let mut bad = sample("ac\0me", now, true);
    bad.meta.request_id = "bad".into();
    let good_b = sample("acme", now, false);
    let config = custodian::config::WriterConfig {
        queue_capacity: 10,
        queue_max_bytes: 1 << 20,
        batch_size: 10,
        flush_interval: std::time::Duration::from_millis(5),
        max_enqueue_wait: std::time::Duration::from_millis(100),
        shutdown_grace: std::time::Duration::from_secs(5),
        max_retry_backoff: std::time::Duration::from_millis(100),
        store_timeout: std::time::Duration::from_secs(5),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let durability = std::sync::Arc::new(custodian::recording::writer::Durability::new(
        None,
        custodian::config::WhenUnrecordable::FailOpen,
    ));
    let (sink, handle) =
        custodian::recording::writer::spawn(store.clone(), &config, durability, stop.clone());
    for r in [good_a.clone(), bad, good_b.clone()] {
        sink.submit(r);
    }
    // Later records are not held up behind the refused one.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.count_records().await.unwrap() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "good records were held up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    handle.await.unwrap();
    assert_eq!(store.count_records().await.unwrap(), 2);
    assert!(store.get_record(good_a.meta.id).await.unwrap().is_some());
    assert!(store.get_record(good_b.meta.id).await.unwrap().is_some());
}

/// Console sessions and OpenID sign-ins under way, on both backends: a
/// session reads back with its principal, is touched and ended once (its
/// audit entry with it), ends with its principal's revocation, and is
/// swept at its end; a sign-in is taken once, and never after its expiry.
async fn console_sessions_and_sign_ins_keep_their_contract(backend: Backend) {
    use custodian::domain::access::{token_hash, ConsoleSession, Role};
    use custodian::store::PendingSignIn;
    let (_db, store) = open(backend).await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    crate::review::principal_in(store.as_ref(), "rex", Role::Reviewer, None).await;
    let principal = store.list_principals().await.unwrap().remove(0);
    let audit = |action: &str| custodian::domain::audit::AuditEvent {
        at: now,
        actor: "principal:rex".into(),
        action: action.into(),
        tenant: None,
        subject: None,
        source: "test".into(),
        details: serde_json::json!({}),
    };
    let session = |cookie: &str| ConsoleSession {
        id_hash: token_hash(cookie),
        principal_id: principal.id,
        via: "token".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + time::Duration::hours(12),
        ended_at: None,
    };
    let (one, two) = (session("one"), session("two"));
    store
        .open_session(&one, &audit("console.signed_in"))
        .await
        .unwrap();
    store
        .open_session(&two, &audit("console.signed_in"))
        .await
        .unwrap();
    let (read, who) = store.session(&one.id_hash).await.unwrap().unwrap();
    assert_eq!((read, who), (one.clone(), principal.clone()));
    assert!(store
        .session(&token_hash("nobody"))
        .await
        .unwrap()
        .is_none());

    let later = now + time::Duration::minutes(5);
    store.touch_session(&one.id_hash, later).await.unwrap();
    // Never backwards.
    store.touch_session(&one.id_hash, now).await.unwrap();
    assert_eq!(
        store
            .session(&one.id_hash)
            .await
            .unwrap()
            .unwrap()
            .0
            .last_seen_at,
        later
    );

    let signed_out = audit("console.signed_out");
    assert!(store
        .end_session(&one.id_hash, later, Some(&signed_out))
        .await
        .unwrap());
    assert!(!store
        .end_session(&one.id_hash, later, Some(&signed_out))
        .await
        .unwrap());
    let ends = store
        .query_audit(&custodian::store::AuditFilter {
            action: Some("console.signed_out".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ends.len(), 1, "an ended session is audited once");

    // Revoking the principal ends its other session in the same transaction.
    assert!(store
        .revoke_principal("rex", later, &audit("principal.revoked"))
        .await
        .unwrap());
    let (two_now, who) = store.session(&two.id_hash).await.unwrap().unwrap();
    assert_eq!(two_now.ended_at, Some(later));
    assert!(who.revoked_at.is_some());

    let pending = PendingSignIn {
        id_hash: token_hash("browser"),
        state: "s".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        created_at: now,
        expires_at: now + time::Duration::minutes(10),
    };
    store.begin_sign_in(&pending).await.unwrap();
    assert_eq!(
        store.take_sign_in(&pending.id_hash, now).await.unwrap(),
        Some(pending.clone())
    );
    assert_eq!(
        store.take_sign_in(&pending.id_hash, now).await.unwrap(),
        None,
        "taken once"
    );
    store.begin_sign_in(&pending).await.unwrap();
    let too_late = now + time::Duration::minutes(11);
    assert_eq!(
        store
            .take_sign_in(&pending.id_hash, too_late)
            .await
            .unwrap(),
        None
    );

    // Swept at their end, like every row with an expiry.
    store.begin_sign_in(&pending).await.unwrap();
    let report = crate::helpers::sweep_at(store.as_ref(), now + time::Duration::hours(13)).await;
    assert_eq!(report.rows.get("console_sessions"), Some(&2));
    assert_eq!(report.rows.get("console_sign_ins"), Some(&1));
    assert!(store.session(&two.id_hash).await.unwrap().is_none());
}

both_stores!(console_sessions_and_sign_ins_keep_their_contract);
