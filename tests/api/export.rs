//! `export training` against stored records: only what was tagged usable,
//! lines reassembled from JSON and SSE, a manifest with the bases and the
//! skips, no record exported twice unless asked, resumable, nothing expired.

use std::path::{Path, PathBuf};

use custodian::domain::clock::ManualClock;
use custodian::export::{self, ExportOptions, Manifest};
use indicatif::ProgressBar;
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn chat_body(prompt: &str, stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [
        {"role": "user", "content": prompt, "name": "u1"}]})
}

async fn set_choice(app: &TestApp, opt_in: bool) {
    let response = app
        .client
        .put(app.url("/custodian/v1/data-sharing"))
        .bearer_auth(MANAGED_KEY)
        .json(&json!({ "training_opt_in": opt_in }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Stores one request of every kind the export must tell apart; returns
/// how many records were written.
async fn store_mixed_traffic(app: &TestApp, clock: &ManualClock) -> i64 {
    set_choice(app, true).await;
    clock.set(T0 + Duration::minutes(1));
    let ok = |r: reqwest::Response| assert_eq!(r.status(), 200);
    ok(app.chat(MANAGED_KEY, chat_body("alpha", false)).await);
    let streamed = app.chat(MANAGED_KEY, chat_body("beta-stream", true)).await;
    streamed.text().await.unwrap();
    ok(app
        .client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", MANAGED_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude", "max_tokens": 5, "system": "sys",
                      "messages": [{"role": "user", "content": "gamma"}]}))
        .send()
        .await
        .unwrap());
    ok(app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("x-custodian-training", "off")
        .json(&chat_body("marker-header-opt-out", false))
        .send()
        .await
        .unwrap());
    ok(app.chat(ZDR_KEY, chat_body("marker-zdr", false)).await);
    ok(app
        .chat(PASSTHROUGH_KEY, chat_body("marker-default-opt-out", false))
        .await);
    // An upstream error is tagged usable but makes no training line.
    let failed = app
        .chat_mode(MANAGED_KEY, &chat_body("marker-429", false), "error429")
        .await;
    assert_eq!(failed.status(), 429);

    clock.set(T0 + Duration::hours(1));
    set_choice(app, false).await;
    ok(app
        .chat(MANAGED_KEY, chat_body("marker-after-opt-out", false))
        .await);
    app.wait_for_records(8).await
}

fn options(dir: &Path, name: &str) -> ExportOptions {
    ExportOptions {
        since: T0 - Duration::days(1),
        until: Some(T0 + Duration::days(1)),
        out: dir.join(name),
        include_exported: false,
        overwrite: false,
        actor: "operator:test".into(),
        source: "test".into(),
        keys: None,
    }
}

async fn export(app: &TestApp, at: OffsetDateTime, options: &ExportOptions) -> Manifest {
    export::run(
        app.store.as_ref(),
        options,
        &ManualClock::new(at),
        &ProgressBar::hidden(),
    )
    .await
    .unwrap()
}

fn lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn only_usable_records_are_exported_as_finetune_lines(backend: Backend) {
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    assert_eq!(store_mixed_traffic(&app, &clock).await, 8);
    let dir = tempfile::tempdir().unwrap();
    let first = options(dir.path(), "train.jsonl");
    let manifest = export(&app, T0 + Duration::hours(2), &first).await;

    assert_eq!(manifest.lines, 3);
    assert_eq!(
        manifest.exported_by_basis,
        counts(&[("explicit_opt_in", 3)])
    );
    assert_eq!(manifest.skipped, counts(&[("unsuccessful_exchange", 1)]));
    let not_usable: Vec<(&str, i64)> = manifest
        .not_usable_by_basis
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        not_usable,
        [
            ("default_opt_out", 1),
            ("explicit_opt_out", 1),
            ("request_opt_out", 1),
            ("zero_data_retention", 1)
        ]
    );
    let written = lines(&first.out);
    assert_eq!(
        written[0],
        json!({"messages": [{"role": "user", "content": "alpha", "name": "u1"},
                            {"role": "assistant", "content": "echo: alpha"}]})
    );
    assert_eq!(
        written[1]["messages"][1],
        json!({"role": "assistant", "content": "echo: beta-stream"}),
        "the streamed answer is reassembled from its deltas"
    );
    assert_eq!(
        written[2],
        json!({"messages": [{"role": "system", "content": "sys"},
                            {"role": "user", "content": "gamma"},
                            {"role": "assistant", "content": "hello"}]})
    );
    let text = std::fs::read_to_string(&first.out).unwrap();
    assert!(
        !text.contains("marker-"),
        "a record that was not usable leaked"
    );
    let on_disk: Manifest =
        serde_json::from_slice(&std::fs::read(export::manifest_path(&first.out)).unwrap()).unwrap();
    assert_eq!(on_disk, manifest);
    assert!(!export::progress_path(&first.out).exists());
    let audit = app.store.audit_entries(0, 100).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, "training.exported");
    assert_eq!(
        last.subject.as_deref(),
        Some(format!("export:{}", manifest.export_id).as_str())
    );

    // A second export takes nothing twice, unless asked.
    let again = export(
        &app,
        T0 + Duration::hours(3),
        &options(dir.path(), "again.jsonl"),
    )
    .await;
    assert_eq!(again.lines, 0);
    assert_eq!(again.skipped["already_exported"], 3);
    let asked = ExportOptions {
        include_exported: true,
        ..options(dir.path(), "asked.jsonl")
    };
    assert_eq!(export(&app, T0 + Duration::hours(3), &asked).await.lines, 3);

    // Past content retention (30 days in the api profile) nothing is readable.
    let late = ExportOptions {
        include_exported: true,
        ..options(dir.path(), "late.jsonl")
    };
    let late = export(&app, T0 + Duration::days(31), &late).await;
    assert_eq!(late.lines, 0);
    assert_eq!(late.skipped["content_expired"], 4);
}

async fn an_interrupted_export_resumes_without_duplicates(backend: Backend) {
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    store_mixed_traffic(&app, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let done = export(
        &app,
        T0 + Duration::hours(2),
        &options(dir.path(), "a.jsonl"),
    )
    .await;

    // The state a crash leaves: the records were already marked by this
    // export, the progress file points before them, and a torn line follows.
    let resume = options(dir.path(), "b.jsonl");
    std::fs::write(&resume.out, "{\"messages\": [torn").unwrap();
    let mut manifest = serde_json::to_value(&done).unwrap();
    manifest["output"] = json!(resume.out.display().to_string());
    manifest["finished_at"] = Value::Null;
    manifest["lines"] = json!(0);
    manifest["bytes"] = json!(0);
    manifest["exported_by_basis"] = json!({});
    manifest["skipped"] = json!({});
    let progress = json!({"manifest": manifest, "cursor_received_at": null, "cursor_id": null});
    std::fs::write(export::progress_path(&resume.out), progress.to_string()).unwrap();

    let resumed = export(&app, T0 + Duration::hours(2), &resume).await;
    assert_eq!(resumed.export_id, done.export_id);
    assert_eq!(resumed.resumed, 1);
    assert_eq!(
        resumed.lines, 3,
        "its own marks do not hide records from it"
    );
    assert_eq!(
        std::fs::read(&resume.out).unwrap(),
        std::fs::read(PathBuf::from(&done.output)).unwrap()
    );

    // A progress file from other options is not silently reused.
    let other = options(dir.path(), "c.jsonl");
    std::fs::write(&other.out, "").unwrap();
    let mut progress = progress.clone();
    progress["manifest"]["since"] = json!("2020-01-01T00:00:00Z");
    std::fs::write(export::progress_path(&other.out), progress.to_string()).unwrap();
    let err = export::run(
        app.store.as_ref(),
        &other,
        &ManualClock::new(T0 + Duration::hours(2)),
        &ProgressBar::hidden(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unfinished export"), "{err}");
}

/// Marks left by an export that never finished do not hold records back.
async fn an_abandoned_export_holds_nothing_back(backend: Backend) {
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    store_mixed_traffic(&app, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    // A run marked everything, then died before finishing.
    let ids: Vec<_> = app
        .store
        .list_records(&custodian::domain::TenantId("acme".into()), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.expires_at))
        .collect();
    app.store
        .mark_exported(uuid::Uuid::now_v7(), T0, &ids)
        .await
        .unwrap();
    let next = export(
        &app,
        T0 + Duration::hours(3),
        &options(dir.path(), "b.jsonl"),
    )
    .await;
    assert_eq!(next.lines, 3, "{next:?}");
}

both_stores!(
    an_abandoned_export_holds_nothing_back,
    only_usable_records_are_exported_as_finetune_lines,
    an_interrupted_export_resumes_without_duplicates,
);

/// A Responses API exchange, plain and streamed, is recorded with its model
/// and usage and exported as a chat fine-tune line; one that leans on state
/// kept upstream is skipped with its reason.
async fn responses_exchanges_are_recorded_and_exported(backend: Backend) {
    let (clock, shared) = manual_clock(T0);
    let app = spawn_app_with(backend, ConfigBuilder::default(), shared).await;
    set_choice(&app, true).await;
    clock.set(T0 + Duration::minutes(1));
    let respond = |body: Value| {
        app.client
            .post(app.url("/v1/responses"))
            .bearer_auth(MANAGED_KEY)
            .json(&body)
            .send()
    };
    let plain = respond(json!({"model": "gpt-r", "instructions": "be brief", "input": "alpha"}))
        .await
        .unwrap();
    let id = record_id(&plain);
    let first: Value = plain.json().await.unwrap();
    let streamed = respond(json!({"model": "gpt-r", "stream": true,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "beta"}]}]}))
    .await
    .unwrap();
    let streamed_id = record_id(&streamed);
    assert!(streamed
        .text()
        .await
        .unwrap()
        .contains("response.completed"));
    let stateful =
        respond(json!({"model": "gpt-r", "input": "gamma", "previous_response_id": first["id"]}))
            .await
            .unwrap();
    assert_eq!(stateful.status(), 200);
    app.wait_for_records(3).await;
    for id in [&id, &streamed_id] {
        let record = app.record(id).await;
        assert_eq!(record.meta.model.as_deref(), Some("gpt-r"));
        assert_eq!(record.meta.usage.total_tokens, Some(10));
        assert_eq!(record.meta.usage.prompt_tokens, Some(6));
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = export(
        &app,
        T0 + Duration::hours(2),
        &options(dir.path(), "r.jsonl"),
    )
    .await;
    assert_eq!(manifest.lines, 2);
    assert_eq!(manifest.skipped, counts(&[("stored_context", 1)]));
    let got = lines(&dir.path().join("r.jsonl"));
    assert_eq!(
        got[0]["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "alpha"},
               {"role": "assistant", "content": "echo: alpha"}])
    );
    assert_eq!(
        got[1]["messages"],
        json!([{"role": "user", "content": "beta"}, {"role": "assistant", "content": "echo: beta"}])
    );
}

both_stores!(responses_exchanges_are_recorded_and_exported);
