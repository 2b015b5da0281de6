//! The cost encryption adds to each record on the proxy path: sealing a
//! record's two bodies (what `Exchange::into_record` does), and opening one
//! (what a reviewer's read does).
//!
//! `cargo bench --bench crypto`

// A benchmark that cannot set up has nothing to measure: stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use custodian::crypto::{open_content, ContentKeys, Kek, KeyStore, Keyring};
use custodian::domain::{RecordId, TenantId};
use time::OffsetDateTime;

const KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn keys(dir: &std::path::Path, runtime: &tokio::runtime::Runtime) -> ContentKeys {
    runtime.block_on(async {
        let keyring = Keyring::new(Kek::from_hex(KEK).expect("a KEK"), Vec::new());
        let store = KeyStore::dir(dir, true).expect("a key directory");
        let keys = ContentKeys::open(store, keyring).await.expect("the keys");
        let now = OffsetDateTime::now_utc();
        keys.prepare(now, now + time::Duration::days(31))
            .await
            .expect("keys made");
        keys.prepare_tenants(&[TenantId("acme".into())])
            .await
            .expect("the tenant's key made");
        keys
    })
}

fn seal_and_open(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = keys(dir.path(), &runtime);
    let tenant = TenantId("acme".into());
    let expires = OffsetDateTime::now_utc() + time::Duration::days(30);
    let mut group = c.benchmark_group("record");
    for size in [1_000usize, 16_000] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(2 * size as u64));
        group.bench_function(format!("seal two {size}-byte bodies"), |b| {
            b.iter(|| {
                let id = RecordId::new();
                let request = keys.seal(expires, id, &tenant, "request", black_box(&body));
                let response = keys.seal(expires, id, &tenant, "response", black_box(&body));
                (request, response)
            })
        });
        let id = RecordId::new();
        let content = custodian::domain::records::RecordContent {
            request_body: keys
                .seal(expires, id, &tenant, "request", &body)
                .expect("sealed"),
            request_truncated: false,
            response_body: keys
                .seal(expires, id, &tenant, "response", &body)
                .expect("sealed"),
            response_truncated: false,
            expires_at: expires,
            sealed: false,
            compressed: false,
        };
        group.bench_function(format!("open two {size}-byte bodies"), |b| {
            b.iter_batched(
                || content.clone(),
                |content| open_content(Some(&keys), id, &tenant, black_box(&content)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
