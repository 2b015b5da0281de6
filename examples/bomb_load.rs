//! Load for `bench/bombs.sh`: a closed-loop normal load of 1 KiB chat
//! requests, alone and then beside an attack of concurrent gzip bodies that
//! inflate far beyond the body limit. Prints one JSON object per phase.
//! Bounded in time (SECONDS per phase) and per request (60 s timeout: a
//! refused bomb may wait its turn for a scan slot, up to 30 s).
//!
//! `cargo run --release --example bomb_load -- URL KEY BODY BOMB SECONDS NORMAL ATTACK`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: std::collections::BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, started: Instant, status: String) {
        self.latencies_us.push(started.elapsed().as_micros() as u64);
        *self.statuses.entry(status).or_default() += 1;
    }

    fn summary(&mut self) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let at = |q: f64| {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            self.latencies_us[i] as f64 / 1000.0
        };
        json!({
            "requests": self.latencies_us.len(),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
            "statuses": self.statuses,
        })
    }
}

/// Closed loop: `clients` tasks send `body` until `until`, one at a time each.
fn run(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: Arc<Vec<u8>>,
    gzip: bool,
    clients: usize,
    until: Instant,
) -> (Arc<Mutex<Tally>>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks = (0..clients)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
            let (body, tally) = (Arc::clone(&body), Arc::clone(&tally));
            tokio::spawn(async move {
                while Instant::now() < until {
                    let started = Instant::now();
                    let mut request = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone());
                    if gzip {
                        request = request.header("content-encoding", "gzip");
                    }
                    let status = match request.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16().to_string();
                            match r.bytes().await {
                                Ok(_) => status,
                                Err(_) => "body_error".to_owned(),
                            }
                        }
                        Err(e) if e.is_timeout() => "timeout".to_owned(),
                        Err(_) => "error".to_owned(),
                    };
                    tally
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(started, status);
                }
            })
        })
        .collect();
    (tally, tasks)
}

async fn finish(
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> serde_json::Value {
    for task in tasks {
        let _ = task.await;
    }
    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    tally.summary()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, body, bomb, seconds, normal, attack] = args.as_slice() else {
        return Err("usage: bomb_load URL KEY BODY BOMB SECONDS NORMAL ATTACK".into());
    };
    let seconds: u64 = seconds.parse()?;
    let (normal, attack): (usize, usize) = (normal.parse()?, attack.parse()?);
    let body = Arc::new(std::fs::read(body)?);
    let bomb = Arc::new(std::fs::read(bomb)?);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()?;

    let until = Instant::now() + Duration::from_secs(seconds);
    let (tally, tasks) = run(&client, url, key, Arc::clone(&body), false, normal, until);
    let alone = finish(tally, tasks).await;
    println!("{}", json!({"phase": "normal_alone", "normal": alone}));

    let until = Instant::now() + Duration::from_secs(seconds);
    let (normal_tally, normal_tasks) = run(&client, url, key, body, false, normal, until);
    let (attack_tally, attack_tasks) = run(&client, url, key, bomb, true, attack, until);
    let beside = finish(normal_tally, normal_tasks).await;
    let bombs = finish(attack_tally, attack_tasks).await;
    println!(
        "{}",
        json!({"phase": "normal_beside_attack", "normal": beside, "attack": bombs})
    );
    Ok(())
}
