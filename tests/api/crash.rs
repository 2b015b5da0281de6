//! kill -9 of the deployed binary under load. In journal mode the end of a
//! response waits for its record to be on disk, so after a restart every
//! response a client received in full has its record: none lost.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custodian::domain::RecordId;
use tokio::task::JoinSet;

use crate::cli::{serve_config, spawn_serve as start, wait_for_listen_addr};
use crate::store::connect_to;

const KEY: &str = "cst_crash_test_managed_key";
/// Bounds on the load: per client, and for waiting on anything.
const REQUESTS_PER_CLIENT: usize = 150;
const CLIENTS: usize = 6;
const KILL_AFTER_ANSWERED: usize = 120;

/// Clients that keep calling until told to stop or the gateway is gone;
/// each id of a response read in full is pushed to `answered`.
fn load(addr: &str, answered: Arc<Mutex<Vec<RecordId>>>) -> JoinSet<()> {
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let (addr, answered) = (addr.to_owned(), Arc::clone(&answered));
        clients.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            for i in 0..REQUESTS_PER_CLIENT {
                let sent = client
                    .post(format!("http://{addr}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .json(
                        &serde_json::json!({"model": "m", "stream": (c + i) % 2 == 0,
                        "messages": [{"role": "user", "content": format!("crash {c} {i}")}]}),
                    )
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                let Some(id) = response
                    .headers()
                    .get("x-custodian-record-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                else {
                    return;
                };
                if response.status() != 200 || response.bytes().await.is_err() {
                    return;
                }
                answered.lock().unwrap().push(RecordId(id));
            }
        });
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_mode_keeps_every_answered_record_through_kill_9() {
    let upstream = crate::upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("custodian.db").display());
    let tenant = format!(
        "managed_keys = [\"{}\"]\n",
        custodian::auth::managed_key_hash(KEY)
    );
    let config = serve_config(
        dir.path(),
        &db,
        &tenant,
        &upstream.url(),
        "[spool]\njournal = true\n",
    );

    let first_log = dir.path().join("first.log");
    let mut gateway = start(&config, &first_log);
    let addr = wait_for_listen_addr(&first_log).await;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut clients = load(&addr, Arc::clone(&answered));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < KILL_AFTER_ANSWERED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "load too slow: {}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.kill().unwrap(); // SIGKILL: no drain, no flush.
    gateway.wait().unwrap();
    while clients.join_next().await.is_some() {}
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= KILL_AFTER_ANSWERED);

    // The restarted gateway replays the journal.
    let second_log = dir.path().join("second.log");
    let mut gateway = start(&config, &second_log);
    wait_for_listen_addr(&second_log).await;
    let store = connect_to(&db).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut missing = answered.clone();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for id in missing {
            if store.get_record(id).await.unwrap().is_none() {
                still.push(id);
            }
        }
        missing = still;
        assert!(
            missing.is_empty() || tokio::time::Instant::now() < deadline,
            "{} of {} answered requests have no record",
            missing.len(),
            answered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill").arg(gateway.id().to_string()).status();
    assert!(gateway.wait().unwrap().success());
}
