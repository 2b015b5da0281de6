//! What per-tenant content keys cost with many tenants: the keys made (and
//! how long the key store takes to make them), the memory they hold, and
//! sealing on the proxy path the first time a tenant's key for a day is
//! derived and after.
//!
//! `cargo run --release --example tenant_keys -- [TENANTS] [KEY_DIR]`
//! (default 10,000 tenants in a temporary directory; give `postgres://…`
//! as KEY_DIR for a PostgreSQL key store).

// A measurement that cannot set up has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use custodian::crypto::{ContentKeys, Kek, KeyStore, Keyring};
use custodian::domain::{RecordId, TenantId};
use time::OffsetDateTime;

const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn open(store: &str, dir: &std::path::Path) -> ContentKeys {
    let keyring = Keyring::new(Kek::from_hex(KEK).unwrap(), Vec::new());
    let store = if store.starts_with("postgres") {
        KeyStore::postgres(store, Duration::from_secs(5))
            .await
            .unwrap()
    } else {
        KeyStore::dir(dir, true).unwrap()
    };
    ContentKeys::open(store, keyring).await.unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("a count"));
    let scratch = tempfile::tempdir().unwrap();
    let store = args.next().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let tenants: Vec<TenantId> = (0..n).map(|i| TenantId(format!("tenant-{i:06}"))).collect();

    let keys = open(&store, scratch.path()).await;
    keys.prepare(now, now + time::Duration::days(31))
        .await
        .unwrap();
    let started = Instant::now();
    keys.prepare_tenants(&tenants).await.unwrap();
    let made = started.elapsed();
    println!(
        "made {n} tenant keys in {:.2} s ({:.0} µs each); the key store holds 32 day keys + {n}",
        made.as_secs_f64(),
        made.as_secs_f64() * 1e6 / n as f64
    );

    // A fresh process loading them, as a gateway starting does.
    let before = rss_kib();
    let started = Instant::now();
    let loaded = open(&store, scratch.path()).await;
    println!(
        "loaded in {:.2} s; memory held: {} KiB ({} bytes per tenant)",
        started.elapsed().as_secs_f64(),
        rss_kib().saturating_sub(before),
        rss_kib().saturating_sub(before) * 1024 / n as u64
    );

    let body = vec![b'x'; 1_000];
    let expires = now + time::Duration::days(30);
    let seal_all = |label: &str| {
        let started = Instant::now();
        for tenant in &tenants {
            let id = RecordId::new();
            loaded.seal(expires, id, tenant, "request", &body).unwrap();
            loaded.seal(expires, id, tenant, "response", &body).unwrap();
        }
        println!(
            "{label}: {:.2} µs per record (two 1,000-byte bodies)",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    };
    let before = rss_kib();
    seal_all("first record of each tenant today (content key derived)");
    println!(
        "derived keys held: {} KiB ({} bytes per tenant and day)",
        rss_kib().saturating_sub(before),
        rss_kib().saturating_sub(before) * 1024 / n as u64
    );
    seal_all("every later record (derived key cached)");
}
