//! An answer the upstream cut short reaches the client as cut short: over
//! HTTP/1.1 (chunked or sized) the client's response is aborted, over
//! HTTP/2 the stream is reset, in journal mode too; the record says
//! `upstream_failed` with the bytes relayed and the prefix captured.

use custodian::domain::Outcome;
use serde_json::{json, Value};

use crate::helpers::*;

fn streamed(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "stream": true,
           "messages": [{"role": "user", "content": prompt}]})
}

fn sized(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
}

/// Send `body` in `mode` with `client`; the body read must fail. Returns
/// the record id and what arrived before the failure.
async fn read_cut(
    app: &TestApp,
    client: &reqwest::Client,
    body: &Value,
    mode: &str,
) -> (String, Vec<u8>) {
    let response = client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("x-mock-mode", mode)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    let mut stream = futures_util::StreamExt::boxed(response.bytes_stream());
    let mut got = Vec::new();
    loop {
        match futures_util::StreamExt::next(&mut stream).await {
            Some(Ok(chunk)) => got.extend_from_slice(&chunk),
            Some(Err(_)) => return (id, got),
            None => panic!(
                "a cut answer ended cleanly ({mode}): {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

async fn assert_recorded_as_cut(app: &TestApp, id: &str, relayed: &[u8]) {
    let record = app.record(id).await;
    assert_eq!(record.meta.outcome, Outcome::UpstreamFailed);
    assert_eq!(record.meta.response_bytes, relayed.len() as i64);
    assert!(!relayed.is_empty(), "the prefix was relayed");
    let content = record.content.expect("content kept");
    assert_eq!(content.response_body, relayed, "the captured prefix");
}

async fn a_cut_answer_fails_the_client_over_http1(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, got) = read_cut(&app, &app.client, &streamed("reset"), "reset").await;
    assert!(got.starts_with(b"data: {"), "the first event arrived");
    assert_recorded_as_cut(&app, &id, &got).await;
    let (id, got) = read_cut(&app, &app.client, &sized("cut"), "cut").await;
    assert_recorded_as_cut(&app, &id, &got).await;
}

async fn a_cut_answer_resets_the_http2_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // The same connection carries a whole answer, then a cut one.
    let fine = h2
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .json(&sized("over h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.version(), reqwest::Version::HTTP_2);
    let fine: Value = fine.json().await.unwrap();
    assert_eq!(fine["choices"][0]["message"]["content"], "echo: over h2");
    for (body, mode) in [(streamed("reset"), "reset"), (sized("cut"), "cut")] {
        let (id, got) = read_cut(&app, &h2, &body, mode).await;
        assert_recorded_as_cut(&app, &id, &got).await;
    }
}

async fn a_cut_answer_fails_the_client_in_journal_mode(backend: Backend) {
    let builder = ConfigBuilder {
        spool: "journal = true".into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    for (body, mode) in [(streamed("reset"), "reset"), (sized("cut"), "cut")] {
        let (id, got) = read_cut(&app, &app.client, &body, mode).await;
        assert_recorded_as_cut(&app, &id, &got).await;
    }
}

/// curl, a client that trusts framing and nothing else, reports the
/// transfer as failed.
async fn curl_reports_a_transfer_error(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, mode) in [
        (streamed("reset"), "reset"),
        (sized("cut"), "cut"),
        (sized("whole"), ""),
    ] {
        let url = app.url("/v1/chat/completions");
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-o", "/dev/null", "--max-time", "10", "-H"])
            .arg(format!("authorization: Bearer {MANAGED_KEY}"))
            .args(["-H", "content-type: application/json", "-H"])
            .arg(format!("x-mock-mode: {mode}"))
            .arg("--data-binary")
            .arg(body.to_string())
            .arg(url);
        let out = tokio::task::spawn_blocking(move || curl.output().expect("curl runs"))
            .await
            .unwrap();
        let failed = !out.status.success();
        assert_eq!(failed, !mode.is_empty(), "curl on {mode:?}: {out:?}");
    }
}

both_stores!(
    a_cut_answer_fails_the_client_over_http1,
    a_cut_answer_resets_the_http2_stream,
    a_cut_answer_fails_the_client_in_journal_mode,
    curl_reports_a_transfer_error,
);
