//! PostgreSQL itself stopped (`pg_ctlcluster … stop`) in the middle of a
//! bounded load, then started again: proxying never stops, and afterwards
//! every answered request has exactly one record.
//!
//! This stops the machine's PostgreSQL, so it is a test binary of its own:
//! `cargo test` runs test binaries one after another, never beside the
//! `api` tests that need the database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should panic with the error"
)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
#[macro_use]
mod helpers;
#[allow(dead_code)]
#[path = "../api/upstream.rs"]
mod upstream;
#[allow(dead_code)]
#[path = "../api/upstream_objects.rs"]
mod upstream_objects;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian::domain::clock::SystemClock;
use custodian::domain::RecordId;
use tokio::task::JoinSet;

use helpers::*;

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 200;

/// `pg_ctlcluster <version> main <action>` for the machine's one cluster.
fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster under /etc/postgresql")
        .flatten()
        .next()
        .expect("one cluster version")
        .file_name();
    let status = Command::new("pg_ctlcluster")
        .arg("--skip-systemctl-redirect")
        .arg(&version)
        .args(["main", action])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Starts PostgreSQL again however the test ends.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let running = Command::new("pg_isready")
            .args(["-h", "127.0.0.1", "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if !running {
            pg_ctl("start");
        }
    }
}

type Answers = Arc<Mutex<Vec<(u16, RecordId)>>>;

fn load(app: &TestApp, answers: Answers) -> JoinSet<()> {
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let (url, client, answers) = (
            app.url("/v1/chat/completions"),
            app.client.clone(),
            Arc::clone(&answers),
        );
        clients.spawn(async move {
            for i in 0..REQUESTS_PER_CLIENT {
                let response = client
                    .post(&url)
                    .bearer_auth(MANAGED_KEY)
                    .json(
                        &serde_json::json!({"model": "m", "stream": (c + i) % 2 == 0,
                        "messages": [{"role": "user", "content": format!("outage {c} {i}")}]}),
                    )
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let id = RecordId(record_id(&response).parse().unwrap());
                response.bytes().await.unwrap();
                answers.lock().unwrap().push((status, id));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    clients
}

async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgres_mid_load_loses_no_record() {
    let _restart = RestartOnDrop;
    let builder = ConfigBuilder {
        extra: "[writer]\nstore_timeout = \"1s\"\n".into(),
        ..Default::default()
    };
    let app = spawn_app_with(Backend::Postgres, builder, Arc::new(SystemClock)).await;
    let answers: Answers = Arc::default();
    let count = || answers.lock().unwrap().len();
    let mut clients = load(&app, Arc::clone(&answers));

    until("load before the outage", 60, || count() >= 150).await;
    tokio::task::spawn_blocking(|| pg_ctl("stop"))
        .await
        .unwrap();
    let at_stop = count();
    until("answers while PostgreSQL is down", 60, || {
        count() >= at_stop + 300
    })
    .await;
    tokio::task::spawn_blocking(|| pg_ctl("start"))
        .await
        .unwrap();
    while clients.join_next().await.is_some() {}

    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), CLIENTS * REQUESTS_PER_CLIENT);
    assert!(answers.iter().all(|(status, _)| *status == 200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = app.store.count_records().await.unwrap_or(-1);
        if stored == answers.len() as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} records for {} answered requests",
            answers.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, id) in &answers {
        assert!(
            app.store.get_record(*id).await.unwrap().is_some(),
            "{id} lost"
        );
    }
}
