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
        custodian::proxy::auth::managed_key_hash(KEY)
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

/// An upload cut by kill -9 leaves a blob being written under `pending/`
/// and its file key; the restarted gateway's sweeper removes both once the
/// upload is older than `files.pending_max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_midway_leaves_nothing_after_a_sweep() {
    let upstream = crate::upstream::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("custodian.db").display());
    let key_dir = dir.path().join("keys");
    std::fs::write(dir.path().join("kek"), crate::helpers::TEST_KEK).unwrap();
    let tenant = format!(
        "managed_keys = [\"{}\"]\n",
        custodian::proxy::auth::managed_key_hash(KEY)
    );
    let extra = format!(
        "[sweeper]\ninterval = \"1s\"\n\n[encryption]\nenabled = true\nkey_dir = \"{}\"\n\
         kek = {{ file = \"{}\" }}\n",
        key_dir.display(),
        dir.path().join("kek").display()
    );
    let config = serve_config(dir.path(), &db, &tenant, &upstream.url(), &extra);
    let text = std::fs::read_to_string(&config).unwrap();
    let restart_config = dir.path().join("restart.toml");
    std::fs::write(
        &restart_config,
        text.replace("[files]\n", "[files]\npending_max_age = \"1s\"\n"),
    )
    .unwrap();
    let pending = dir.path().join("files").join("pending");
    let leftovers = || std::fs::read_dir(&pending).map_or(0, |d| d.count());
    let file_keys = || async {
        crate::helpers::test_keys(&key_dir)
            .await
            .file_key_records()
            .await
            .unwrap()
            .len()
    };

    let log = dir.path().join("first.log");
    let mut gateway = start(&config, &log);
    let addr = wait_for_listen_addr(&log).await;
    // A fine-tune upload past the blob writer's buffer, then nothing more.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let head = b"--cut\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n\
--cut\r\nContent-Disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n\r\n";
    tx.send(Ok(head.to_vec())).await.unwrap();
    let upload = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/files"))
            .bearer_auth(KEY)
            .header("content-type", "multipart/form-data; boundary=cut")
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .send(),
    );
    let line = b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n".repeat(1024);
    for _ in 0..(12 << 20) / line.len() {
        tx.send(Ok(line.clone())).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while leftovers() == 0 || file_keys().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never reached the blob store: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.kill().unwrap(); // SIGKILL: the upload cannot clean up.
    gateway.wait().unwrap();
    drop(tx);
    let _ = upload.await;
    assert!(
        leftovers() > 0 && file_keys().await > 0,
        "the kill left something"
    );

    let log = dir.path().join("second.log");
    let mut gateway = start(&restart_config, &log);
    wait_for_listen_addr(&log).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while leftovers() > 0 || file_keys().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} pending blobs and {} file keys left: {}",
            leftovers(),
            file_keys().await,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill").arg(gateway.id().to_string()).status();
    assert!(gateway.wait().unwrap().success());
}
