//! Retention, proven with a controllable clock: a record lives exactly its
//! retention, legal holds keep it and their release lets it go, the table
//! registry covers every table, the PostgreSQL sweeper is exclusive and
//! finishes an interrupted sweep, and a ZDR tenant's content is nowhere.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use custodian::domain::audit::AuditEvent;
use custodian::domain::clock::{Clock, ManualClock, SystemClock};
use custodian::domain::{RecordId, TenantId};
use custodian::jobs::sweeper::sweep_once;
use custodian::store::{registry, NewHold};
use serde_json::json;
use sqlx::Connection;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const CONTENT: Duration = Duration::days(30);
const METADATA: Duration = Duration::days(365);
const SECOND: Duration = Duration::seconds(1);

fn marker() -> String {
    format!("marker-{}", uuid::Uuid::now_v7().simple())
}

fn body(text: &str, stream: bool) -> serde_json::Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

async fn stored(app: &TestApp, id: &str) -> Option<custodian::domain::records::Record> {
    app.store
        .get_record(RecordId(id.parse().unwrap()))
        .await
        .unwrap()
}

async fn a_record_lives_exactly_its_retention(backend: Backend) {
    let (_clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    let marker = marker();
    let response = app.chat(MANAGED_KEY, body(&marker, false)).await;
    let id = record_id(&response);
    let received = app.record(&id).await.meta.received_at;
    assert_eq!(received, T0);

    sweep_at(&*app.store, T0 + CONTENT - SECOND).await;
    assert!(stored(&app, &id).await.unwrap().content.is_some());

    let report = sweep_at(&*app.store, T0 + CONTENT + SECOND).await;
    assert_eq!(report.rows["record_content"], 1);
    let record = stored(&app, &id).await.unwrap();
    assert!(record.content.is_none(), "content is gone on time");
    assert!(scan_tables(&app, &marker).await.is_empty());

    sweep_at(&*app.store, T0 + METADATA - SECOND).await;
    assert!(stored(&app, &id).await.is_some());
    let report = sweep_at(&*app.store, T0 + METADATA + SECOND).await;
    assert_eq!(report.rows["record_meta"], 1);
    assert!(
        stored(&app, &id).await.is_none(),
        "metadata is gone on time"
    );
    assert_eq!(app.store.count_records().await.unwrap(), 0);
}

async fn whole_partitions_are_dropped_once_past(backend: Backend) {
    let (_clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    for _ in 0..3 {
        app.chat(MANAGED_KEY, body("x", true))
            .await
            .text()
            .await
            .unwrap();
    }
    app.wait_for_records(3).await;
    let report = sweep_at(&*app.store, T0 + CONTENT + Duration::days(2)).await;
    assert_eq!(report.rows["record_content"], 3);
    if backend == Backend::Postgres {
        assert!(
            report
                .partitions
                .contains(&"record_content_p20260701".to_owned()),
            "{:?}",
            report.partitions
        );
        let names = app.store.table_names().await.unwrap();
        assert!(!names
            .iter()
            .any(|n| n.starts_with("record_content_p2026070")));
    }
    // Idempotent: a second sweep finds nothing more.
    let again = sweep_at(&*app.store, T0 + CONTENT + Duration::days(2)).await;
    assert_eq!(again.total_rows(), 0);
}

pub fn hold_audit(action: &str) -> AuditEvent {
    AuditEvent {
        at: T0,
        actor: "operator:legal".into(),
        action: action.into(),
        tenant: Some(TenantId("acme".into())),
        subject: None,
        source: "test".into(),
        details: json!({}),
    }
}

async fn legal_holds_keep_records_until_released(backend: Backend) {
    let (_clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    let held_one = record_id(&app.chat(PASSTHROUGH_KEY, body("held", false)).await);
    let free_one = record_id(&app.chat(PASSTHROUGH_KEY, body("free", false)).await);
    let acme = [
        record_id(&app.chat(MANAGED_KEY, body("a", false)).await),
        record_id(&app.chat(MANAGED_KEY, body("b", true)).await),
    ];
    app.wait_for_records(4).await;

    let tenant_hold = app
        .store
        .add_hold(
            &NewHold {
                tenant: TenantId("acme".into()),
                record: None,
                reason: "matter 42".into(),
                created_by: "operator:legal".into(),
                created_at: T0,
                ends_at: T0 + Duration::days(400),
            },
            &hold_audit("legal_hold.placed"),
        )
        .await
        .unwrap();
    app.store
        .add_hold(
            &NewHold {
                tenant: TenantId("beta".into()),
                record: Some(RecordId(held_one.parse().unwrap())),
                reason: "ticket 7".into(),
                created_by: "operator:legal".into(),
                created_at: T0,
                ends_at: T0 + Duration::days(40),
            },
            &hold_audit("legal_hold.placed"),
        )
        .await
        .unwrap();

    let past = T0 + CONTENT + Duration::days(3);
    sweep_at(&*app.store, past).await;
    for id in acme.iter().chain([&held_one]) {
        assert!(
            stored(&app, id).await.unwrap().content.is_some(),
            "{id} is held"
        );
    }
    assert!(stored(&app, &free_one).await.unwrap().content.is_none());

    // A hold past its end keeps nothing.
    sweep_at(&*app.store, T0 + Duration::days(41)).await;
    assert!(stored(&app, &held_one).await.unwrap().content.is_none());

    let released = app
        .store
        .release_hold(
            tenant_hold,
            "operator:legal",
            past,
            &hold_audit("legal_hold.released"),
        )
        .await
        .unwrap();
    assert!(released);
    assert!(!app
        .store
        .release_hold(tenant_hold, "x", past, &hold_audit("legal_hold.released"))
        .await
        .unwrap());
    sweep_at(&*app.store, past).await;
    for id in &acme {
        assert!(
            stored(&app, id).await.unwrap().content.is_none(),
            "{id} released"
        );
    }
    let actions: Vec<String> = app
        .store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "legal_hold.placed",
            "legal_hold.placed",
            "legal_hold.released"
        ]
    );
}

/// A table added without a retention class fails here.
async fn every_table_has_a_retention_class(backend: Backend) {
    let app = spawn_app(backend).await;
    for table in app.store.table_names().await.unwrap() {
        assert!(
            registry::lookup(&table).is_some()
                || registry::INTERNAL_TABLES.contains(&table.as_str()),
            "table {table} has no retention class in store::registry"
        );
    }
}

/// Every request path a ZDR tenant can take leaves no byte of its content
/// in any table (and, on SQLite, in any file of the database).
async fn zero_data_retention_content_is_nowhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let marker = marker();
    let started = std::time::SystemTime::now();
    let ok = app.chat(ZDR_KEY, body(&marker, false)).await;
    assert_eq!(ok.status(), 200);
    assert!(
        ok.text().await.unwrap().contains(&marker),
        "the echo carries it"
    );
    app.chat(ZDR_KEY, body(&marker, true))
        .await
        .text()
        .await
        .unwrap();
    let failed = app
        .chat_mode(ZDR_KEY, &body(&marker, false), "error429")
        .await;
    assert_eq!(failed.status(), 429);
    let reset = app.chat_mode(ZDR_KEY, &body(&marker, true), "reset").await;
    let _ = reset.text().await;
    // A client that goes away mid-stream.
    let held = app.chat_mode(ZDR_KEY, &body(&marker, true), "hold").await;
    drop(held);
    // Too large for the gateway: refused, still recorded.
    let huge = format!("{marker}{}", "x".repeat(70_000));
    let refused = app.chat(ZDR_KEY, body(&huge, false)).await;
    assert_eq!(refused.status(), 413);
    assert!(app.wait_for_records(6).await >= 6);
    tokio::time::sleep(StdDuration::from_millis(200)).await;

    assert_eq!(scan_tables(&app, &marker).await, Vec::<String>::new());
    for file in database_files(&app, started) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} holds ZDR content",
            file.display()
        );
    }
    // The control: the same marker from a normal tenant is found.
    let control = app.chat(MANAGED_KEY, body(&marker, false)).await;
    app.record(&record_id(&control)).await;
    assert!(
        !scan_tables(&app, &marker).await.is_empty(),
        "the scan finds content"
    );
}

/// Tables (of any retention class) with a row containing `needle`, as text
/// or as bytes.
async fn scan_tables(app: &TestApp, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let hex = hex::encode(needle);
    for table in app.store.table_names().await.unwrap() {
        let hits: i64 = match app.store.backend() {
            "postgres" => {
                let pool = sqlx::PgPool::connect(app._db.url()).await.unwrap();
                // A row as text shows bytea as hex.
                sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM {table} t WHERE t::text LIKE $1 OR t::text LIKE $2"
                ))
                .bind(format!("%{needle}%"))
                .bind(format!("%{hex}%"))
                .fetch_one(&pool)
                .await
                .unwrap()
            }
            _ => {
                let pool = sqlx::SqlitePool::connect(app._db.url()).await.unwrap();
                let columns: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let any = columns
                    .iter()
                    .map(|c| format!("instr(CAST({c} AS BLOB), CAST(?1 AS BLOB)) > 0"))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {any}"))
                    .bind(needle)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        if hits > 0 {
            found.push(table);
        }
    }
    found
}

/// The files the database wrote since `since`: the SQLite file and its
/// WAL; PostgreSQL's WAL segments (every write passes through them).
fn database_files(app: &TestApp, since: std::time::SystemTime) -> Vec<std::path::PathBuf> {
    let dir = match &app._db {
        TestDb::Sqlite { url, .. } => {
            let path = std::path::PathBuf::from(url.trim_start_matches("sqlite://"));
            path.parent().unwrap().to_owned()
        }
        TestDb::Postgres { .. } => {
            let Some(dir) = pg_wal_dir() else {
                return Vec::new();
            };
            dir
        }
    };
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
                && e.path().is_file()
        })
        .map(|e| e.path())
        .collect()
}

/// The WAL directory of the local PostgreSQL, when this process can read it.
fn pg_wal_dir() -> Option<std::path::PathBuf> {
    let output = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-tAc",
            "SHOW data_directory",
        ])
        .output()
        .ok()?;
    let dir =
        std::path::PathBuf::from(String::from_utf8(output.stdout).ok()?.trim()).join("pg_wal");
    std::fs::read_dir(&dir).is_ok().then_some(dir)
}

both_stores!(
    a_record_lives_exactly_its_retention,
    whole_partitions_are_dropped_once_past,
    legal_holds_keep_records_until_released,
    every_table_has_a_retention_class,
    zero_data_retention_content_is_nowhere,
);

/// Replicas: while one holds the sweep lock, another does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_sweeps_at_a_time() {
    // Without the gateway's own periodic sweep, which may hold the lock too.
    let builder = ConfigBuilder {
        extra: "[sweeper]\nenabled = false\n".into(),
        ..Default::default()
    };
    let app = spawn_app_with(Backend::Postgres, builder, Arc::new(SystemClock)).await;
    let mut holder = sqlx::PgConnection::connect(app._db.url()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(x'63737477'::bigint)")
        .execute(&mut holder)
        .await
        .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    let report = sweep_once(&*app.store, clock.as_ref(), 100, false)
        .await
        .unwrap();
    assert!(report.skipped_locked);
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut holder)
        .await
        .unwrap();
    let report = sweep_once(&*app.store, clock.as_ref(), 100, false)
        .await
        .unwrap();
    assert!(!report.skipped_locked);
}

/// A sweep interrupted after detaching a partition (or mid-detach) is
/// completed by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_partition_drop_is_finished_by_the_next_sweep() {
    let (_clock, shared) = manual_clock(T0);
    let app = spawn_app_with(Backend::Postgres, ConfigBuilder::default(), shared).await;
    app.chat(MANAGED_KEY, body("x", false)).await;
    app.wait_for_records(1).await;
    let mut conn = sqlx::PgConnection::connect(app._db.url()).await.unwrap();
    sqlx::query("ALTER TABLE record_content DETACH PARTITION record_content_p20260701")
        .execute(&mut conn)
        .await
        .unwrap();
    let dry = sweep_once(&*app.store, &ManualClock::new(T0), 100, true)
        .await
        .unwrap();
    assert!(dry.partitions.is_empty());
    sweep_at(&*app.store, T0).await;
    let names = app.store.table_names().await.unwrap();
    assert!(
        !names.contains(&"record_content_p20260701".to_owned()),
        "the detached partition was dropped: {names:?}"
    );
}
