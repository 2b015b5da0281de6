//! What tenant ownership costs on the proxy path (issue #13): reading a
//! request body for the objects it names (the fast path every chat request
//! takes, and the parse a body that names objects takes), the rules' text
//! scan of the same body, and one registry lookup and one registration on
//! SQLite and PostgreSQL (the round trip a request naming an object adds).
//!
//! `cargo bench --bench objects` (PostgreSQL at CUSTODIAN_TEST_PG_URL or
//! postgres://postgres@127.0.0.1:5432/postgres; skipped when unreachable)

// A benchmark that cannot set up has nothing to measure: stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use custodian::abuse::scan;
use custodian::domain::objects::UpstreamObject;
use custodian::domain::{RecordId, TenantId};
use custodian::objects;
use custodian::store::Store;
use sqlx::{Connection, Executor};
use time::OffsetDateTime;

fn chat_body() -> Vec<u8> {
    let text = "Summarise the attached notes in three bullet points. ".repeat(17);
    serde_json::json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": text}]})
    .to_string()
    .into_bytes()
}

fn parsing(c: &mut Criterion) {
    let chat = chat_body();
    let named = serde_json::json!({"model": "m", "previous_response_id": "resp_abc",
        "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}],
        "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]})
    .to_string()
    .into_bytes();
    let limits = scan::Limits {
        max_scan_bytes: 32 << 20,
        max_body_bytes: 32 << 20,
    };
    let mut group = c.benchmark_group("request body");
    group.bench_function("body_refs, 1 KiB chat (names nothing)", |b| {
        b.iter(|| objects::body_refs(black_box(&chat)))
    });
    group.bench_function("body_refs, a body naming three objects", |b| {
        b.iter(|| objects::body_refs(black_box(&named)))
    });
    group.bench_function("rules' scan, 1 KiB chat", |b| {
        let body = scan::Body {
            content_type: Some("application/json"),
            encodings: &[],
            bytes: &chat,
            complete: true,
        };
        b.iter(|| scan::scan(black_box(body), limits))
    });
    group.finish();
}

fn object(i: usize, now: OffsetDateTime) -> UpstreamObject {
    UpstreamObject {
        route: "openai".into(),
        object_id: format!("file-{i:08}"),
        kind: "file".into(),
        tenant: TenantId(format!("tenant-{}", i % 50)),
        record_id: RecordId::new(),
        collection: "files".into(),
        created_at: now,
        purge_at: None,
        deleted_at: None,
    }
}

fn registry_on(
    c: &mut Criterion,
    name: &str,
    store: &dyn Store,
    runtime: &tokio::runtime::Runtime,
) {
    let now = OffsetDateTime::now_utc();
    let rows: Vec<UpstreamObject> = (0..10_000).map(|i| object(i, now)).collect();
    runtime.block_on(async {
        for chunk in rows.chunks(500) {
            store.insert_objects(chunk).await.expect("rows inserted");
        }
    });
    let mut group = c.benchmark_group(format!("registry on {name} (10,000 objects)"));
    let ids = vec!["file-00004242".to_owned()];
    group.bench_function("look up one id", |b| {
        b.iter(|| runtime.block_on(store.objects("openai", black_box(&ids))))
    });
    let mut next = 10_000;
    group.bench_function("register one object", |b| {
        b.iter(|| {
            next += 1;
            runtime.block_on(store.insert_objects(&[object(next, now)]))
        })
    });
    group.finish();
}

fn registry(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let config = |url: String| custodian::config::DatabaseConfig {
        url,
        migrate_on_start: true,
        max_connections: 4,
        connect_timeout: std::time::Duration::from_secs(5),
        partitions_ahead: std::time::Duration::from_secs(86_400),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = runtime.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = custodian::store::connect(&config(url))
            .await
            .expect("SQLite");
        store.migrate().await.expect("migrated");
        store
    });
    registry_on(c, "SQLite", sqlite.as_ref(), &runtime);

    let admin = std::env::var("CUSTODIAN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("custodian_bench_{}", uuid::Uuid::now_v7().simple());
    let created = runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .ok()?;
        Some(())
    });
    if created.is_none() {
        eprintln!("PostgreSQL not reachable at {admin}: its registry figures are skipped");
        return;
    }
    let url = format!(
        "{}/{name}",
        admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base)
    );
    let pg = runtime.block_on(async {
        let store = custodian::store::connect(&config(url))
            .await
            .expect("PostgreSQL");
        store.migrate().await.expect("migrated");
        store
    });
    registry_on(c, "PostgreSQL", pg.as_ref(), &runtime);
    drop(pg);
    runtime.block_on(async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    });
}

criterion_group!(benches, parsing, registry);
criterion_main!(benches);
