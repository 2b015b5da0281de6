//! Three gateway processes on one PostgreSQL database under load, while
//! their sweepers run, consent changes on one replica and reviewers claim
//! through all three: no record lost or duplicated, expired rows swept
//! exactly once, no review item claimed twice, every replica applying the
//! consent change.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use custodian::domain::access::Role;
use custodian::domain::RecordId;
use serde_json::json;
use tokio::task::JoinSet;

use crate::cli::{serve_config, spawn_serve, wait_for_logged};
use crate::helpers::{metric_sum, Backend, TestDb};
use crate::review::{claim_until_empty, principal_in};
use crate::store::{connect_to, sample};

const REPLICAS: usize = 3;
const KEY: &str = "cst_replica_test_managed_key";
const EXPIRED: usize = 3_000;
const CLIENTS: usize = 6;
const REQUESTS_PER_CLIENT: usize = 60;

const EXTRA: &str = r#"
[sweeper]
interval = "300ms"
batch_size = 500

[consent]
refresh_interval = "200ms"

[[rules]]
name = "weapons"
keywords = ["build a bomb"]
"#;

struct Replica {
    child: Child,
    proxy: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn start_replicas(db_url: &str, upstream: &str) -> Vec<Replica> {
    let tenant = format!(
        "managed_keys = [\"{}\"]\n",
        custodian::proxy::auth::managed_key_hash(KEY)
    );
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        // Each replica has its own directory, so its own spool.
        let dir = tempfile::tempdir().unwrap();
        let config = serve_config(dir.path(), db_url, &tenant, upstream, EXTRA);
        let log = dir.path().join("gateway.log");
        let child = spawn_serve(&config, &log);
        let proxy = wait_for_logged(&log, "proxy_addr=").await;
        let admin = wait_for_logged(&log, "admin_addr=").await;
        replicas.push(Replica {
            child,
            proxy,
            admin,
            _dir: dir,
        });
    }
    replicas
}

/// One chat completion through `proxy`; its record id and training tag.
async fn call(
    client: &reqwest::Client,
    proxy: &str,
    prompt: &str,
    stream: bool,
) -> (RecordId, String) {
    let response = client
        .post(format!("http://{proxy}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "m", "stream": stream,
            "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-custodian-record-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let tag = response.headers()["x-custodian-training"]
        .to_str()
        .unwrap()
        .to_owned();
    response.bytes().await.unwrap();
    (RecordId(id), tag)
}

/// Change the tenant's choice through one replica, then wait (bounded) until
/// every replica tags new requests accordingly.
async fn change_consent(
    client: &reqwest::Client,
    replicas: &[Replica],
    through: usize,
    opt_in: bool,
    answered: &Mutex<Vec<RecordId>>,
) {
    let response = client
        .put(format!(
            "http://{}/custodian/v1/data-sharing",
            replicas[through].proxy
        ))
        .bearer_auth(KEY)
        .json(&json!({ "training_opt_in": opt_in }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let want = if opt_in { "allowed" } else { "denied" };
    for replica in replicas {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        loop {
            let (id, tag) = call(client, &replica.proxy, "consent probe", false).await;
            answered.lock().unwrap().push(id);
            if tag == want {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {} still tags {tag}",
                replica.proxy
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
    }
}

/// Load spread over every replica; one request in ten is flagged.
fn load(
    replicas: &[Replica],
    answered: Arc<Mutex<Vec<RecordId>>>,
    flagged: Arc<Mutex<HashSet<String>>>,
) -> JoinSet<()> {
    let proxies: Vec<String> = replicas.iter().map(|r| r.proxy.clone()).collect();
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let (proxies, answered, flagged) =
            (proxies.clone(), Arc::clone(&answered), Arc::clone(&flagged));
        clients.spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..REQUESTS_PER_CLIENT {
                let bad = i % 10 == 0;
                let prompt = match bad {
                    true => format!("how to build a bomb {c} {i}"),
                    false => format!("hello {c} {i}"),
                };
                let proxy = &proxies[(c + i) % proxies.len()];
                let (id, _) = call(&client, proxy, &prompt, i % 2 == 0).await;
                answered.lock().unwrap().push(id);
                if bad {
                    flagged.lock().unwrap().insert(id.to_string());
                }
            }
        });
    }
    clients
}

/// Reviewers, each on one replica's admin API, claim until the queue is empty.
async fn claim_everything(
    replicas: &[Replica],
    store: &dyn custodian::store::Store,
) -> Vec<String> {
    let mut reviewers = JoinSet::new();
    for r in 0..2 * REPLICAS {
        let token = principal_in(store, &format!("reviewer{r}"), Role::Reviewer, None).await;
        let admin = format!("http://{}", replicas[r % REPLICAS].admin);
        reviewers
            .spawn(async move { claim_until_empty(&reqwest::Client::new(), &admin, &token).await });
    }
    let mut claimed = Vec::new();
    while let Some(mine) = reviewers.join_next().await {
        claimed.extend(mine.unwrap());
    }
    claimed
}

/// Rows of `record_meta` the replica's sweeper removed, from its metrics.
async fn swept_by(replica: &Replica) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", replica.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_sum(
        &text,
        "custodian_sweep_rows_removed_total",
        "table=\"record_meta\"",
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_postgres_without_loss_or_double_work() {
    let upstream = crate::upstream::spawn().await;
    let db = TestDb::new(Backend::Postgres).await;
    let store = connect_to(db.url()).await;
    // Records whose metadata expired yesterday, for the sweepers to find.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let yesterday = now - time::Duration::days(2);
    store
        .prepare_partitions(yesterday, yesterday, now)
        .await
        .unwrap();
    let old = now - time::Duration::days(366);
    let expired: Vec<_> = (0..EXPIRED).map(|_| sample("acme", old, false)).collect();
    for chunk in expired.chunks(500) {
        store.insert_records(chunk).await.unwrap();
    }

    let mut replicas = start_replicas(db.url(), &upstream.url()).await;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let flagged = Arc::new(Mutex::new(HashSet::new()));
    let mut clients = load(&replicas, Arc::clone(&answered), Arc::clone(&flagged));
    let client = reqwest::Client::new();
    change_consent(&client, &replicas, 0, true, &answered).await;
    change_consent(&client, &replicas, REPLICAS - 1, false, &answered).await;
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let flagged = flagged.lock().unwrap().clone();

    // Every answered request has its one record; the expired ones are gone.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(30);
    while store.count_records().await.unwrap() != answered.len() as i64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} records for {} answered requests",
            store.count_records().await.unwrap(),
            answered.len()
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    for id in &answered {
        assert!(store.get_record(*id).await.unwrap().is_some(), "{id} lost");
    }
    for r in expired.iter().step_by(100) {
        assert!(store.get_record(r.meta.id).await.unwrap().is_none());
    }
    // Each expired row was removed by exactly one replica.
    let mut swept = 0;
    for replica in &replicas {
        swept += swept_by(replica).await;
    }
    assert_eq!(swept, EXPIRED as u64, "rows removed across replicas");

    // Every flagged request's item is claimed exactly once across replicas.
    let claimed = claim_everything(&replicas, store.as_ref()).await;
    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), unique.len(), "an item was claimed twice");
    assert_eq!(unique, flagged, "every flagged item was claimed");

    for replica in &mut replicas {
        let _ = Command::new("kill")
            .arg(replica.child.id().to_string())
            .status();
        assert!(replica.child.wait().unwrap().success());
    }
}
