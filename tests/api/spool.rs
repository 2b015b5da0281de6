//! The store goes away (PostgreSQL behind a relay that is cut; SQLite held
//! under an exclusive lock): proxying goes on, records go to the disk spool
//! and reach the store exactly once when it is back. A spool damaged by a
//! crash is replayed up to the damage. In fail-closed mode, requests are
//! refused while neither the store nor the spool can take records.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use custodian::domain::clock::SystemClock;
use custodian::domain::RecordId;
use custodian::recording::spool::Spool;
use custodian::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::*;
use crate::store::{connect_to, sample};
use crate::tcp_cut::TcpCut;

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "mock-gpt", "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

/// Send one chat completion (streamed or not), read it to the end, and
/// return its record id; the call must succeed.
async fn answered(app: &TestApp, key: &str, prompt: &str, stream: bool) -> RecordId {
    let response = app.chat(key, chat(prompt, stream)).await;
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    let body = response.text().await.unwrap();
    assert!(!body.is_empty());
    RecordId(id.parse().unwrap())
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    out.sort();
    out
}

fn spool_holds(dir: &Path, marker: &str) -> bool {
    segments(dir).iter().any(|p| {
        let bytes = std::fs::read(p).unwrap_or_default();
        bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
    })
}

async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every id has its record, and there is no other.
async fn exactly_these(store: &dyn Store, ids: &[RecordId]) {
    for id in ids {
        assert!(store.get_record(*id).await.unwrap().is_some(), "{id} lost");
    }
    assert_eq!(store.count_records().await.unwrap(), ids.len() as i64);
}

/// A PostgreSQL test database reached through a relay the test can cut.
async fn postgres_behind_relay(builder: ConfigBuilder) -> (TestApp, TcpCut, Arc<dyn Store>) {
    let db = TestDb::new(Backend::Postgres).await;
    let direct = connect_to(db.url()).await;
    let (cut, url) = crate::tcp_cut::relay_to(db.url()).await;
    let mut builder = builder;
    builder.database_url = Some(url);
    if !builder.extra.contains("[writer]") {
        builder.extra += "\n[writer]\nstore_timeout = \"1s\"\n";
    }
    let app = spawn_app_on(db, builder, Arc::new(SystemClock)).await;
    (app, cut, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_loses_no_record_and_duplicates_none() {
    let (app, cut, direct) = postgres_behind_relay(ConfigBuilder::default()).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(answered(&app, MANAGED_KEY, &format!("before {i}"), i % 2 == 0).await);
    }
    eventually("records before the outage", 10, async || {
        direct.count_records().await.unwrap() == 6
    })
    .await;

    cut.cut();
    for i in 0..24 {
        ids.push(answered(&app, MANAGED_KEY, &format!("during {i}"), i % 2 == 0).await);
    }
    let zdr_marker = format!("zdr-marker-{}", uuid::Uuid::now_v7().simple());
    ids.push(answered(&app, ZDR_KEY, &zdr_marker, false).await);
    ids.push(answered(&app, ZDR_KEY, &zdr_marker, true).await);
    let kept_marker = format!("kept-marker-{}", uuid::Uuid::now_v7().simple());
    ids.push(answered(&app, MANAGED_KEY, &kept_marker, false).await);
    let spool = app.spool_dir.path().to_owned();
    eventually("the records spooled", 15, async || {
        spool_holds(&spool, &kept_marker)
    })
    .await;
    assert!(
        !spool_holds(&spool, &zdr_marker),
        "ZDR content reached the spool"
    );
    assert_eq!(direct.count_records().await.unwrap(), 6);

    cut.restore();
    eventually("the spool replayed", 20, async || {
        direct.count_records().await.unwrap() == ids.len() as i64 && segments(&spool).is_empty()
    })
    .await;
    exactly_these(direct.as_ref(), &ids).await;

    // Back to normal: new records go straight to the store.
    ids.push(answered(&app, MANAGED_KEY, "after", false).await);
    eventually("a record after the outage", 10, async || {
        direct.count_records().await.unwrap() == ids.len() as i64
    })
    .await;
    exactly_these(direct.as_ref(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_store_is_spooled_around_until_released() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = db.url().to_owned();
    let builder = ConfigBuilder {
        extra: "[writer]\nstore_timeout = \"300ms\"\n".into(),
        ..Default::default()
    };
    let app = spawn_app_on(db, builder, Arc::new(SystemClock)).await;
    let mut ids = vec![answered(&app, MANAGED_KEY, "before", false).await];
    app.wait_for_records(1).await;

    // Another process holds the write lock: the store is there but stuck.
    let mut locker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    for i in 0..10 {
        ids.push(answered(&app, MANAGED_KEY, &format!("locked {i}"), i % 2 == 1).await);
    }
    let spool = app.spool_dir.path().to_owned();
    eventually("the records spooled", 15, async || {
        !segments(&spool).is_empty()
    })
    .await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    drop(locker);

    eventually("the spool replayed", 20, async || {
        app.store.count_records().await.unwrap() == ids.len() as i64 && segments(&spool).is_empty()
    })
    .await;
    exactly_these(app.store.as_ref(), &ids).await;
}

/// A crash mid-append leaves a torn frame; a bad disk, a flipped byte. The
/// gateway starts anyway and replays every intact record before the damage.
async fn a_damaged_spool_is_replayed_up_to_the_damage(backend: Backend) {
    let spool_dir = tempfile::tempdir().unwrap();
    let config = custodian::config::SpoolConfig {
        dir: spool_dir.path().to_owned(),
        ..Default::default()
    };
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let torn: Vec<_> = (0..3).map(|_| sample("acme", now, true)).collect();
    let flipped: Vec<_> = (0..2).map(|_| sample("acme", now, false)).collect();
    {
        let spool = Arc::new(Spool::open(&config).unwrap());
        spool.append(&torn).await.unwrap();
    }
    {
        // Reopened: a new segment, as after a restart.
        let spool = Arc::new(Spool::open(&config).unwrap());
        spool.append(&flipped).await.unwrap();
    }
    let files = segments(spool_dir.path());
    assert_eq!(files.len(), 2);
    let first = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &first[..first.len() - 7]).unwrap();
    let mut second = std::fs::read(&files[1]).unwrap();
    let last = second.len() - 3;
    second[last] ^= 0x40;
    std::fs::write(&files[1], &second).unwrap();
    std::fs::write(spool_dir.path().join("notes.txt"), b"not a segment").unwrap();

    let builder = ConfigBuilder {
        spool_dir: Some(spool_dir.path().display().to_string()),
        ..Default::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let expected = [torn[0].meta.id, torn[1].meta.id, flipped[0].meta.id];
    eventually("the intact records replayed", 15, async || {
        segments(spool_dir.path()).is_empty()
    })
    .await;
    exactly_these(app.store.as_ref(), &expected).await;
    assert_eq!(
        app.store
            .get_record(torn[0].meta.id)
            .await
            .unwrap()
            .unwrap(),
        torn[0]
    );
    // Files that are not segments are left alone.
    assert!(spool_dir.path().join("notes.txt").exists());
    // And the gateway serves.
    answered(&app, MANAGED_KEY, "after", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_requests_while_no_record_can_be_kept() {
    // A spool too small for any record: once the store is gone, nothing can
    // keep a record.
    let builder = ConfigBuilder {
        spool: "max_bytes = 64\nwhen_unavailable = \"fail_closed\"\n".into(),
        ..Default::default()
    };
    let (app, cut, direct) = postgres_behind_relay(builder).await;
    let mut ids = vec![answered(&app, MANAGED_KEY, "before", false).await];

    cut.cut();
    let mut refused = None;
    for i in 0..100 {
        let response = app
            .chat(MANAGED_KEY, chat(&format!("during {i}"), false))
            .await;
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
        ids.push(RecordId(record_id(&response).parse().unwrap()));
        let _ = response.text().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("requests refused while records cannot be kept");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert_eq!(body["error"]["type"], "server_error");

    cut.restore();
    let mut served = false;
    for _ in 0..100 {
        let response = app.chat(MANAGED_KEY, chat("after", false)).await;
        if response.status() == 200 {
            ids.push(RecordId(record_id(&response).parse().unwrap()));
            let _ = response.text().await;
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "requests served again once the store is back");
    // The records of requests answered before the refusal were kept in
    // memory and written once the store was back.
    eventually("every answered request recorded", 20, async || {
        direct.count_records().await.unwrap() == ids.len() as i64
    })
    .await;
    exactly_these(direct.as_ref(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_refuses_what_exceeds_its_cap_and_rotates_segments() {
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let one = sample("acme", now, true);
    let config = custodian::config::SpoolConfig {
        dir: dir.path().to_owned(),
        max_bytes: 4_096,
        segment_bytes: 600,
        ..Default::default()
    };
    let spool = Arc::new(Spool::open(&config).unwrap());
    let mut kept = 0;
    let err = loop {
        match spool.append(std::slice::from_ref(&one)).await {
            Ok(()) => kept += 1,
            Err(e) => break e,
        }
        assert!(kept < 1_000);
    };
    assert_eq!(err.reason(), "spool_full");
    assert!(kept > 0 && !spool.can_accept());
    assert!(segments(dir.path()).len() > 1, "segments rotate");
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 4_096, "{on_disk} bytes on disk");

    // Replayed (the same record each time: the store keeps one), the spool
    // is empty and takes records again.
    let (_db, store) = crate::store::open(Backend::Sqlite).await;
    let replayed = spool.replay_into(store.as_ref(), 100).await.unwrap();
    assert_eq!(replayed.records, kept);
    assert!(spool.is_empty() && spool.can_accept());
    assert_eq!(store.count_records().await.unwrap(), 1);
    assert!(segments(dir.path()).is_empty());
}

both_stores!(a_damaged_spool_is_replayed_up_to_the_damage);

/// Journal mode: every record passes through the spool before its response
/// ends, and reaches the store once, streamed or not, errors included.
async fn journal_mode_records_every_exchange_once(backend: Backend) {
    let builder = ConfigBuilder {
        spool: "journal = true\n".into(),
        ..Default::default()
    };
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(answered(&app, MANAGED_KEY, &format!("journaled {i}"), i % 2 == 0).await);
    }
    ids.push(answered(&app, ZDR_KEY, "zdr journaled", true).await);
    let refused = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .body(vec![b'x'; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    ids.push(RecordId(record_id(&refused).parse().unwrap()));
    let spool = app.spool_dir.path().to_owned();
    eventually("journaled records in the store", 15, async || {
        app.store.count_records().await.unwrap() == ids.len() as i64 && segments(&spool).is_empty()
    })
    .await;
    exactly_these(app.store.as_ref(), &ids).await;
}

both_stores!(journal_mode_records_every_exchange_once);

/// With encryption on, what the spool holds is ciphertext too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_content_is_encrypted() {
    let key_dir = tempfile::tempdir().unwrap();
    let builder = ConfigBuilder {
        spool: "journal = true\nreplay_interval = \"1h\"\n".into(),
        extra: format!(
            "[encryption]\nenabled = true\nkey_dir = \"{}\"\nkek = {{ env = \"TEST_KEK\" }}\n",
            key_dir.path().display()
        ),
        ..Default::default()
    };
    let app = spawn_app_with(Backend::Sqlite, builder, Arc::new(SystemClock)).await;
    let marker = format!("spooled-secret-{}", uuid::Uuid::now_v7().simple());
    for stream in [false, true] {
        answered(&app, MANAGED_KEY, &marker, stream).await;
    }
    // Journal mode: the records are in the spool before the responses end.
    let spool = app.spool_dir.path().to_owned();
    assert!(!segments(&spool).is_empty());
    assert!(spool_holds(&spool, "chat/completions"), "metadata in clear");
    assert!(
        !spool_holds(&spool, &marker),
        "content in clear in the spool"
    );
}

/// fail_open with nowhere to put records (store gone, spool full, queue
/// full): requests are still answered, and every record not kept is
/// counted with its reason, never dropped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_counts_every_record_it_cannot_keep() {
    let builder = ConfigBuilder {
        spool: "max_bytes = 64\n".into(),
        extra: "[writer]\nstore_timeout = \"300ms\"\nqueue_capacity = 1\nbatch_size = 1\n\
                max_enqueue_wait = \"50ms\"\n"
            .into(),
        ..Default::default()
    };
    let (app, cut, _direct) = postgres_behind_relay(builder).await;
    cut.cut();
    for i in 0..12 {
        answered(&app, MANAGED_KEY, &format!("unkept {i}"), false).await;
    }
    let dropped = || async {
        metric_sum(
            &app.metrics().await,
            "custodian_records_dropped_total",
            "reason=\"spool_full\"",
        )
    };
    eventually("records counted as dropped", 15, async || {
        dropped().await > 0.0
    })
    .await;
    cut.restore();
}

/// The record queue is bounded in bytes as well as in records: with the
/// store gone and no spool, a queue of a thousand places takes only what
/// fits in `writer.queue_max_bytes`; the rest is counted, never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_queue_is_bounded_in_bytes() {
    let builder = ConfigBuilder {
        spool: "enabled = false\n".into(),
        extra: "[writer]\nstore_timeout = \"300ms\"\nqueue_capacity = 1000\nbatch_size = 1\n\
                queue_max_bytes = 16384\nmax_enqueue_wait = \"50ms\"\n"
            .into(),
        ..Default::default()
    };
    let (app, cut, direct) = postgres_behind_relay(builder).await;
    cut.cut();
    let mut ids = Vec::new();
    for i in 0..30 {
        // About 3 KiB of captured bodies per record.
        ids.push(
            answered(
                &app,
                MANAGED_KEY,
                &format!("{i} {}", "x".repeat(1500)),
                false,
            )
            .await,
        );
    }
    let dropped = || async {
        metric_sum(
            &app.metrics().await,
            "custodian_records_dropped_total",
            "reason=\"queue_full\"",
        )
    };
    eventually("records beyond the byte budget counted", 15, async || {
        dropped().await > 0.0
    })
    .await;
    cut.restore();
    // Every record is stored or counted as lost; some were queued.
    eventually("the queued records are stored", 30, async || {
        let stored = direct.count_records().await.unwrap() as usize;
        stored > 0 && stored + dropped().await as usize == ids.len()
    })
    .await;
}
