//! Encryption at rest with crypto-shredding: stored content is ciphertext,
//! readers (the review API) see the plaintext, and once a day's key is
//! destroyed a backup taken before the sweep (a copy of the SQLite file, a
//! `pg_dump` restored into a fresh database) no longer opens that day's
//! content, while later content still opens with the live key store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use std::time::Duration;

use custodian::crypto::shred_check::{check, ShredCheck};
use custodian::crypto::{
    open_content, ContentKeys, ContentView, CryptoError, Kek, KeyStore, Keyring,
};
use custodian::domain::access::Role;
use custodian::domain::RecordId;
use custodian::store::Store;
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::helpers::*;
use crate::review::principal_in;
use crate::store::connect_to;

const T0: OffsetDateTime = datetime!(2027-01-10 12:00 UTC);

/// Where a test keeps its keys: a directory, or a PostgreSQL database of
/// their own (apart from the content database).
pub(crate) enum TestKeyStore {
    Dir(tempfile::TempDir),
    Postgres(TestDb),
}

impl TestKeyStore {
    pub(crate) async fn new(kind: KeysIn) -> Self {
        match kind {
            KeysIn::Dir => Self::Dir(tempfile::tempdir().unwrap()),
            KeysIn::Postgres => Self::Postgres(TestDb::new(Backend::Postgres).await),
        }
    }

    fn config(&self) -> String {
        match self {
            Self::Dir(dir) => format!("key_dir = \"{}\"", dir.path().display()),
            Self::Postgres(db) => format!("key_store_url = \"{}\"", db.url()),
        }
    }

    /// The live key store, as a fresh process (no cache) opens it.
    async fn open(&self) -> Arc<ContentKeys> {
        let store = match self {
            Self::Dir(dir) => KeyStore::dir(dir.path(), true).unwrap(),
            Self::Postgres(db) => KeyStore::postgres(db.url(), Duration::from_secs(5))
                .await
                .unwrap(),
        };
        let keyring = Keyring::new(Kek::from_hex(TEST_KEK).unwrap(), Vec::new());
        Arc::new(ContentKeys::open(store, keyring).await.unwrap())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum KeysIn {
    Dir,
    Postgres,
}

pub(crate) fn builder(keys: &TestKeyStore) -> ConfigBuilder {
    ConfigBuilder {
        extra: format!(
            "[encryption]\nenabled = true\n{}\nkek = {{ env = \"TEST_KEK\" }}\n\
             refresh_interval = \"100ms\"\n\n[sweeper]\nenabled = false\n\n{}",
            keys.config(),
            crate::review::RULES,
        ),
        // Bodies as captured, so that finding no marker at rest proves the
        // sealing (compressed bodies would hide it on their own);
        // `compressed_then_sealed_content_reads_back` covers the two together.
        capture: "compression_level = 0".to_owned(),
        ..Default::default()
    }
}

/// A flagged chat completion carrying `marker`, once stored; its record id.
async fn flagged(app: &TestApp, marker: &str) -> RecordId {
    RecordId(crate::review::flagged(app, marker).await.parse().unwrap())
}

/// The review item (with its record) as an admin reads it.
async fn review_item(app: &TestApp, token: &str, id: RecordId) -> Value {
    app.client
        .get(format!("{}/admin/v1/review/items/{id}", app.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An operator's configuration for the database `db_url` and `key_store`.
pub(crate) fn operator_config(
    dir: &Path,
    key_store: &TestKeyStore,
    db_url: &str,
) -> std::path::PathBuf {
    let extra = format!(
        "[encryption]\nenabled = true\n{}\nkek = {{ env = \"TEST_KEK\" }}\n",
        key_store.config()
    );
    crate::cli::write_config(dir, db_url, &extra)
}

/// `scripts/shred-proof.sh` as an operator runs it.
pub(crate) fn shred_proof(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/shred-proof.sh"
    ))
    .args(args)
    .env("CUSTODIAN", env!("CARGO_BIN_EXE_custodian"))
    .env("TEST_KEK", TEST_KEK)
    .env_remove("CUSTODIAN__DATABASE__URL")
    .output()
    .expect("the script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The operator's script with the real binary and the real clock: records
/// written 40 days ago (their content expired 10 days ago) are backed up
/// and restored into a scratch database. While their key lives, `check`
/// fails (expired content still opens); once the sweep has destroyed it,
/// `check` passes and counts them expired.
async fn the_shred_proof_script_backs_up_restores_and_verifies(backend: Backend) {
    let key_store = TestKeyStore::new(KeysIn::Dir).await;
    let now = OffsetDateTime::now_utc();
    let (_, clock) = manual_clock(now - time::Duration::days(40));
    let mut app = spawn_app_with(backend, builder(&key_store), clock).await;
    flagged(&app, "script-marker").await;
    let dir = tempfile::tempdir().unwrap();
    let config = operator_config(dir.path(), &key_store, app._db.url());
    let backup = dir.path().join("backup");
    let (ok, text) = shred_proof(&["backup".as_ref(), config.as_os_str(), backup.as_os_str()]);
    assert!(ok, "{text}");
    let admin_url = crate::helpers::pg_admin_url();
    let check = || {
        shred_proof(&[
            "check".as_ref(),
            config.as_os_str(),
            backup.as_os_str(),
            admin_url.as_ref(),
        ])
    };
    let (ok, text) = check();
    assert!(!ok, "{text}");
    assert!(
        text.contains("past their expiry day and still readable: 1"),
        "{text}"
    );
    // The sweep destroys the key (the gateway stopped first: its upkeep,
    // on the test's clock, would make that day's key again).
    let keys = app.keys();
    app.stop().await;
    keys.destroy_expired(now, &Default::default())
        .await
        .unwrap();
    let (ok, text) = check();
    assert!(ok, "{text}");
    assert!(text.contains("expired (key destroyed): 1"), "{text}");
    // The scratch database is gone (another test's run of the script may
    // hold one of its own for a moment: wait it out, bounded).
    if backend == Backend::Postgres {
        let pool = sqlx::PgPool::connect(app._db.url()).await.unwrap();
        let mut left: i64 = -1;
        for _ in 0..100 {
            left = sqlx::query_scalar(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'custodian_shred_check%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(left, 0);
    }
}

both_stores!(the_shred_proof_script_backs_up_restores_and_verifies);

fn holds(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// A copy of the database as a backup would hold it, and a way to open it.
enum Backup {
    Sqlite(tempfile::TempDir),
    Postgres {
        dump: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
}

fn take_backup(db_url: &str) -> Backup {
    let dir = tempfile::tempdir().unwrap();
    if let Some(file) = db_url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let from = format!("{file}{suffix}");
            if Path::new(&from).exists() {
                std::fs::copy(&from, dir.path().join(format!("copy.db{suffix}"))).unwrap();
            }
        }
        return Backup::Sqlite(dir);
    }
    let dump = dir.path().join("dump.pgc");
    let status = Command::new("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(db_url)
        .status()
        .expect("pg_dump runs");
    assert!(status.success());
    Backup::Postgres { dump, _dir: dir }
}

/// Restore the backup somewhere fresh; the store on it (and what keeps it).
async fn restore(backup: &Backup) -> (Arc<dyn Store>, Option<TestDb>) {
    match backup {
        Backup::Sqlite(dir) => {
            let url = format!("sqlite://{}", dir.path().join("copy.db").display());
            (connect_to(&url).await, None)
        }
        Backup::Postgres { dump, .. } => {
            let fresh = TestDb::new(Backend::Postgres).await;
            let status = Command::new("pg_restore")
                .args(["--no-owner", "-d"])
                .arg(fresh.url())
                .arg(dump)
                .status()
                .expect("pg_restore runs");
            assert!(status.success());
            (connect_to(fresh.url()).await, Some(fresh))
        }
    }
}

async fn content_of(store: &dyn Store, keys: &ContentKeys, id: RecordId) -> ContentView {
    let record = store.get_record(id).await.unwrap().expect("the record");
    let content = record.content.as_ref().expect("content rows");
    open_content(Some(keys), id, &record.meta.tenant, content)
}

async fn a_backup_loses_expired_content_when_its_key_is_destroyed(
    backend: Backend,
    keys_in: KeysIn,
) {
    let key_store = TestKeyStore::new(keys_in).await;
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, builder(&key_store), shared).await;
    let early_marker = format!("early-{}", uuid::Uuid::now_v7().simple());
    let late_marker = format!("late-{}", uuid::Uuid::now_v7().simple());
    let early = flagged(&app, &early_marker).await;
    clock.set(T0 + time::Duration::days(3));
    let late = flagged(&app, &late_marker).await;

    // What the database holds is ciphertext; the review API shows plaintext.
    for (id, marker) in [(early, &early_marker), (late, &late_marker)] {
        let stored = app.store.get_record(id).await.unwrap().unwrap();
        let content = stored.content.unwrap();
        assert!(!holds(&content.request_body, marker));
        assert!(!holds(&content.response_body, marker));
    }
    // Content columns are the only place a body goes: on SQLite, no byte
    // of either body is anywhere in the database files in clear.
    // On PostgreSQL, in no column of any table (a plain dump writes bytea
    // as hex, text as is: look for both).
    if let Some(file) = app._db.url().strip_prefix("sqlite://") {
        for suffix in ["", "-wal"] {
            let bytes = std::fs::read(format!("{file}{suffix}")).unwrap_or_default();
            assert!(!holds(&bytes, &early_marker) && !holds(&bytes, &late_marker));
        }
    } else {
        let dump = Command::new("pg_dump")
            .arg(app._db.url())
            .output()
            .expect("pg_dump runs");
        assert!(dump.status.success());
        for marker in [&early_marker, &late_marker] {
            assert!(!holds(&dump.stdout, marker));
            assert!(!holds(&dump.stdout, &hex::encode(marker)));
        }
    }
    let admin = principal_in(app.store.as_ref(), "admin", Role::Admin, None).await;
    let item = review_item(&app, &admin, early).await;
    assert_eq!(item["record"]["content"]["state"], "present", "{item}");
    assert!(item["record"]["content"]["request"]
        .as_str()
        .unwrap()
        .contains(&early_marker));

    let backup = take_backup(app._db.url());

    // The day the early content expires (T0 + 30 d) has ended; the late
    // content's has not. Sweep and destroy the keys of ended days.
    let now = datetime!(2027-02-10 01:00 UTC);
    clock.set(now);
    sweep_at(app.store.as_ref(), now).await;
    let (restored, _fresh) = restore(&backup).await;
    // Before the keys go, the backup still opens past expiry: the check
    // sees it (and the operator's `keys verify` fails).
    let before = check(restored.as_ref(), &app.keys(), now, None)
        .await
        .unwrap();
    assert_eq!(
        (before.rows, before.past_expiry_readable, before.holds()),
        (2, 1, false),
        "{before:?}"
    );
    custodian::jobs::sweeper::shred_expired_keys(app.store.as_ref(), &app.keys(), now).await;
    // What restores the backup is a fresh process on the live key store.
    let keys = key_store.open().await;
    let after = check(restored.as_ref(), &keys, now, None).await.unwrap();
    let want = ShredCheck {
        rows: 2,
        readable: 1,
        expired: 1,
        ..ShredCheck::default()
    };
    assert_eq!(after, want);
    assert!(after.holds());
    // Checked against a key store that did not seal it, nothing is
    // "expired" before its day: the check says so rather than pass.
    let stranger = TestKeyStore::new(KeysIn::Dir).await.open().await;
    let wrong = check(restored.as_ref(), &stranger, now, None)
        .await
        .unwrap();
    assert_eq!((wrong.key_missing_early, wrong.holds()), (1, false));

    // The restored backup still has both rows; only the late one opens.
    assert_eq!(
        content_of(restored.as_ref(), &keys, early).await,
        ContentView::Expired
    );
    match content_of(restored.as_ref(), &keys, late).await {
        ContentView::Readable { request, .. } => assert!(holds(&request, &late_marker)),
        other => panic!("the unexpired content does not open: {other:?}"),
    }
    // The live gateway still opens what has not expired.
    let item = review_item(&app, &admin, late).await;
    assert_eq!(item["record"]["content"]["state"], "present", "{item}");
}

#[tokio::test]
async fn sqlite_backup_with_a_key_directory() {
    a_backup_loses_expired_content_when_its_key_is_destroyed(Backend::Sqlite, KeysIn::Dir).await;
}

#[tokio::test]
async fn pg_dump_with_a_key_directory() {
    a_backup_loses_expired_content_when_its_key_is_destroyed(Backend::Postgres, KeysIn::Dir).await;
}

#[tokio::test]
async fn pg_dump_with_a_postgres_key_store() {
    a_backup_loses_expired_content_when_its_key_is_destroyed(Backend::Postgres, KeysIn::Postgres)
        .await;
}

/// Two replicas share one content database and one PostgreSQL key store:
/// each opens what the other sealed, and a key one of them destroys is
/// gone for the other within its refresh interval.
#[tokio::test]
async fn replicas_share_a_postgres_key_store() {
    let key_store = TestKeyStore::new(KeysIn::Postgres).await;
    let (clock, shared) = manual_clock(T0);
    let one = spawn_app_with(Backend::Postgres, builder(&key_store), Arc::clone(&shared)).await;
    let two = spawn_app_with(
        Backend::Postgres,
        ConfigBuilder {
            database_url: Some(one._db.url().to_owned()),
            ..builder(&key_store)
        },
        shared,
    )
    .await;
    let marker = format!("shared-{}", uuid::Uuid::now_v7().simple());
    let id = flagged(&one, &marker).await;
    let admin = principal_in(one.store.as_ref(), "admin", Role::Admin, None).await;
    let item = review_item(&two, &admin, id).await;
    assert_eq!(item["record"]["content"]["state"], "present", "{item}");
    assert!(item["record"]["content"]["request"]
        .as_str()
        .unwrap()
        .contains(&marker));

    let now = T0 + time::Duration::days(32);
    clock.set(now);
    custodian::jobs::sweeper::shred_expired_keys(one.store.as_ref(), &one.keys(), now).await;
    // The item is past its expiry now (the API answers 404): what the
    // other replica's keys open of the row is what counts.
    let mut state = content_of(two.store.as_ref(), &two.keys(), id).await;
    for _ in 0..100 {
        if state == ContentView::Expired {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = content_of(two.store.as_ref(), &two.keys(), id).await;
    }
    assert_eq!(state, ContentView::Expired);
}

/// The key store going away does not stop sealing: the days' keys are in
/// memory, the upkeep fails (counted) and retries, content is stored sealed
/// and readable, and the keys made meanwhile are the store's once it is back.
#[tokio::test]
async fn sealing_goes_on_while_the_key_store_is_away() {
    let keys_db = TestDb::new(Backend::Postgres).await;
    let (relay, relayed) = crate::tcp_cut::relay_to(keys_db.url()).await;
    let mut config = builder(&TestKeyStore::Dir(tempfile::tempdir().unwrap()));
    config.extra = config.extra.replacen(
        "key_dir = ",
        &format!("key_store_url = \"{relayed}\"\n# key_dir = "),
        1,
    );
    let app = spawn_app_with(
        Backend::Sqlite,
        config,
        Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    relay.cut();
    let errors = || async {
        metric_sum(
            &app.metrics().await,
            "custodian_key_upkeep_errors_total",
            "",
        )
    };
    for _ in 0..200 {
        if errors().await > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors().await > 0.0, "the key store was not away");
    let marker = format!("away-{}", uuid::Uuid::now_v7().simple());
    let id = flagged(&app, &marker).await;
    let stored = app.store.get_record(id).await.unwrap().unwrap();
    let content = stored.content.expect("content kept");
    assert!(!holds(&content.request_body, &marker));
    let admin = principal_in(app.store.as_ref(), "admin", Role::Admin, None).await;
    let item = review_item(&app, &admin, id).await;
    assert!(item["record"]["content"]["request"]
        .as_str()
        .unwrap()
        .contains(&marker));
    relay.restore();
    // A fresh process on the key store opens it: the key was stored before.
    let keys = TestKeyStore::Postgres(keys_db).open().await;
    assert!(matches!(
        open_content(Some(&keys), id, &stored.meta.tenant, &content),
        ContentView::Readable { .. }
    ));
}

/// A legal hold keeps the key of the day its held content expires on, and
/// only that day's: the rest of the expired content is shredded as usual.
async fn a_legal_hold_keeps_only_the_keys_of_its_content(backend: Backend) {
    use custodian::store::NewHold;
    let key_store = TestKeyStore::new(KeysIn::Dir).await;
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, builder(&key_store), shared).await;
    let held_marker = format!("held-{}", uuid::Uuid::now_v7().simple());
    let held = flagged(&app, &held_marker).await;
    clock.set(T0 + time::Duration::days(1));
    let free = flagged(&app, "free").await;
    let record = app.store.get_record(held).await.unwrap().unwrap();
    app.store
        .add_hold(
            &NewHold {
                tenant: record.meta.tenant.clone(),
                record: Some(held),
                reason: "matter 7".into(),
                created_by: "operator:legal".into(),
                created_at: T0,
                ends_at: T0 + time::Duration::days(400),
            },
            &crate::retention::hold_audit("legal_hold.placed"),
        )
        .await
        .unwrap();
    let store = Arc::clone(&app.store);
    let day_of = |id| {
        let store = Arc::clone(&store);
        async move {
            let record = store.get_record(id).await.unwrap().unwrap();
            custodian::crypto::key_day(record.content.unwrap().expires_at)
        }
    };
    let (held_day, free_day) = (day_of(held).await, day_of(free).await);
    assert_ne!(held_day, free_day);

    let now = T0 + time::Duration::days(40);
    clock.set(now);
    sweep_at(app.store.as_ref(), now).await;
    custodian::jobs::sweeper::shred_expired_keys(app.store.as_ref(), &app.keys(), now).await;
    let TestKeyStore::Dir(dir) = &key_store else {
        unreachable!()
    };
    let key_file = |day: i32| dir.path().join(format!("content-{day}.key")).exists();
    assert!(key_file(held_day), "the held day's key is kept");
    assert!(!key_file(free_day), "the other day's key is destroyed");
    let admin = principal_in(app.store.as_ref(), "admin", Role::Admin, None).await;
    let item = review_item(&app, &admin, held).await;
    assert_eq!(item["record"]["content"]["state"], "present", "{item}");
}

both_stores!(a_legal_hold_keeps_only_the_keys_of_its_content);

/// Keys kept in the content database travel in its backups: refused.
#[tokio::test]
async fn a_key_store_in_the_content_database_is_refused() {
    let app = spawn_app(Backend::Postgres).await;
    let err = KeyStore::postgres(app._db.url(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, CryptoError::KeysBesideContent), "{err}");
}

/// Whether content is sealed is stored beside it: a body in clear that
/// begins with the sealing header reads as it is, encryption on or off.
/// An app on `builder` with an admin, and `body` sent as text to the echo
/// route as the managed-key tenant (a rule flags "build a bomb"): the app,
/// the admin's token, the record and the answer.
async fn echoed(
    backend: Backend,
    builder: ConfigBuilder,
    body: &[u8],
) -> (TestApp, String, RecordId, bytes::Bytes) {
    let app = spawn_app_with(
        backend,
        builder,
        Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let admin = principal_in(app.store.as_ref(), "ada", Role::Admin, None).await;
    let response = app
        .client
        .post(app.url("/v1/echo"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "text/plain")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = RecordId(record_id(&response).parse().unwrap());
    let answered = response.bytes().await.unwrap();
    (app, admin, id, answered)
}

async fn a_body_in_clear_that_looks_sealed_reads_as_it_is(backend: Backend) {
    let keys = TestKeyStore::new(KeysIn::Dir).await;
    let plain = ConfigBuilder {
        extra: crate::review::RULES.into(),
        ..Default::default()
    };
    for builder in [plain, builder(&keys)] {
        let sealing = builder.extra.contains("[encryption]");
        let body = b"\0CSTENC1 build a bomb, in clear";
        let (app, admin, id, _) = echoed(backend, builder, body).await;
        let stored = app.record(&id.to_string()).await.content.unwrap();
        assert_eq!(stored.sealed, sealing);
        let item = review_item(&app, &admin, id).await;
        let content = &item["record"]["content"];
        assert_eq!(content["state"], "present", "sealing {sealing}: {item}");
        assert_eq!(
            content["request"].as_str().unwrap().as_bytes(),
            body,
            "sealing {sealing}"
        );
    }
}

both_stores!(a_body_in_clear_that_looks_sealed_reads_as_it_is);

/// Bodies are compressed before they are sealed: at rest both are smaller
/// than captured (and sealed when encryption is on), and a reviewer reads
/// exactly what was sent and answered.
async fn compressed_then_sealed_content_reads_back(backend: Backend) {
    let keys = TestKeyStore::new(KeysIn::Dir).await;
    let plain = ConfigBuilder {
        extra: crate::review::RULES.into(),
        ..Default::default()
    };
    let sealed = ConfigBuilder {
        capture: String::new(),
        ..builder(&keys)
    };
    for builder in [plain, sealed] {
        let sealing = builder.extra.contains("[encryption]");
        let body = "please build a bomb, step by step; ".repeat(60);
        let (app, admin, id, answered) = echoed(backend, builder, body.as_bytes()).await;
        let stored = app.stored_record(&id.to_string()).await.content.unwrap();
        assert!(stored.compressed, "sealing {sealing}");
        assert_eq!(stored.sealed, sealing);
        assert!(
            stored.request_body.len() + stored.response_body.len()
                < (body.len() + answered.len()) / 4,
            "sealing {sealing}: {} bytes at rest",
            stored.request_body.len() + stored.response_body.len()
        );
        let item = review_item(&app, &admin, id).await;
        let content = &item["record"]["content"];
        assert_eq!(content["state"], "present", "sealing {sealing}: {item}");
        assert_eq!(content["request"].as_str().unwrap(), body);
        // The echo's answer is no chat answer: shown as the text it is.
        assert_eq!(
            content["response_text"].as_str().unwrap().as_bytes(),
            &answered[..],
            "sealing {sealing}"
        );
    }
}

both_stores!(compressed_then_sealed_content_reads_back);
