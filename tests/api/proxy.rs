//! The data path, end to end: relay fidelity, streaming, receipts, errors,
//! and one record per exchange.

use std::sync::atomic::Ordering;
use std::time::Duration;

use custodian::domain::{Outcome, TrainingBasis};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::*;

fn chat_body(prompt: &str) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
}

async fn json_call_is_relayed_byte_for_byte_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.chat(MANAGED_KEY, chat_body("hello there")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-custodian-training"], "denied");
    assert_eq!(headers["x-custodian-training-basis"], "default_opt_out");
    assert_eq!(
        headers["x-custodian-retention"],
        "content=30d; metadata=365d"
    );
    assert!(headers["x-custodian-policy-version"]
        .to_str()
        .unwrap()
        .starts_with("pv_"));
    assert!(headers.contains_key("x-request-id"));
    let id = record_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );

    let record = app.record(&id).await;
    let m = &record.meta;
    assert_eq!(m.tenant.0, "acme");
    assert!(m.key_id.0.starts_with("mk_"));
    assert_eq!(
        (m.route.as_str(), m.method.as_str(), m.path.as_str()),
        ("openai", "POST", "/v1/chat/completions")
    );
    assert_eq!(m.status, 200);
    assert_eq!(m.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        (
            m.usage.prompt_tokens,
            m.usage.completion_tokens,
            m.usage.total_tokens
        ),
        (Some(11), Some(7), Some(18))
    );
    assert!(!m.streamed);
    assert_eq!(m.outcome, Outcome::Completed);
    assert_eq!(m.training.basis, TrainingBasis::DefaultOptOut);
    assert_eq!(m.profile, "api");
    assert!(m.upstream_ttfb_us.is_some() && m.upstream_total_us.is_some());
    assert!(m.total_us >= m.upstream_total_us.unwrap());
    assert_eq!(m.expires_at - m.received_at, time::Duration::days(365));
    assert_eq!(
        m.content_expires_at.unwrap() - m.received_at,
        time::Duration::days(30)
    );
    let content = record.content.expect("content stored");
    assert!(String::from_utf8_lossy(&content.request_body).contains("hello there"));
    assert!(String::from_utf8_lossy(&content.response_body).contains("echo: hello there"));
    assert!(!content.request_truncated && !content.response_truncated);
    assert_eq!(content.expires_at, m.content_expires_at.unwrap());
}

async fn managed_key_is_swapped_for_the_upstream_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    app.chat(MANAGED_KEY, chat_body("x")).await;
    let seen = app.upstream.mock.last();
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {UPSTREAM_SECRET}")
    );
    assert!(!format!("{:?}", seen.headers).contains(MANAGED_KEY));
}

async fn passthrough_key_is_forwarded_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.chat(PASSTHROUGH_KEY, chat_body("x")).await;
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    assert_eq!(
        app.upstream.mock.last().headers["authorization"],
        format!("Bearer {PASSTHROUGH_KEY}")
    );
    let record = app.record(&id).await;
    assert_eq!(record.meta.tenant.0, "beta");
    assert!(record.meta.key_id.0.starts_with("pk_"));
}

async fn sse_events_reach_the_client_while_upstream_holds_the_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = chat_body("stream me");
    body["stream"] = json!(true);
    let response = app.chat_mode(MANAGED_KEY, &body, "hold").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id = record_id(&response);
    let mut stream = response.bytes_stream();
    // The upstream has sent one event and waits to be released: the gateway
    // must have relayed it already.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("first event arrives while the upstream holds the rest")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"data: {"));
    assert_eq!(app.upstream.mock.completed.load(Ordering::SeqCst), 0);
    app.upstream.mock.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("stream me"));
    assert!(rest.ends_with("data: [DONE]\n\n"));

    let record = app.record(&id).await;
    assert!(record.meta.streamed);
    assert_eq!(record.meta.outcome, Outcome::Completed);
    assert_eq!(record.meta.usage.total_tokens, Some(8));
    let content = record.content.unwrap();
    assert!(String::from_utf8_lossy(&content.response_body).contains("[DONE]"));
}

async fn client_disconnect_mid_stream_cancels_upstream_and_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = chat_body("leave early");
    body["stream"] = json!(true);
    let response = app.chat_mode(MANAGED_KEY, &body, "hold").await;
    let id = record_id(&response);
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);

    let record = app.record(&id).await;
    assert_eq!(record.meta.outcome, Outcome::ClientDisconnected);
    assert!(record.meta.streamed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.upstream.mock.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream stream was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.upstream.mock.completed.load(Ordering::SeqCst), 0);
}

async fn upstream_errors_pass_through_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .chat_mode(MANAGED_KEY, &chat_body("x"), "error429")
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["x-upstream-trace"], "t-1");
    let id = record_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(app.record(&id).await.meta.status, 429);

    // Malformed JSON needs no parse by the gateway: the upstream answers it.
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("could not parse the JSON"));
}

async fn get_delete_query_strings_and_multipart_pass_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let models: Value = app.get("/v1/models").await.json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "mock-gpt");

    let echo: Value = app
        .get("/v1/echo?limit=2&after=file%20x&order=desc")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["uri"], "/v1/echo?limit=2&after=file%20x&order=desc");

    // A DELETE with the tenant's own upstream key, of a file made outside
    // the gateway (the provider knows it; the gateway need not).
    let made = app
        .upstream
        .mock
        .objects
        .lock()
        .unwrap()
        .create("files", Default::default());
    let deleted = app
        .client
        .delete(app.url(&format!("/v1/files/{}", made["id"].as_str().unwrap())))
        .bearer_auth(PASSTHROUGH_KEY)
        .send()
        .await
        .unwrap();
    let id = record_id(&deleted);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["deleted"], true);
    assert_eq!(app.record(&id).await.meta.method, "DELETE");

    // A multipart upload larger than the capture cap: relayed whole,
    // captured in part.
    let payload = vec![b'a'; 20_000];
    let form = reqwest::multipart::Form::new()
        .text("purpose", "fine-tune")
        .part(
            "file",
            reqwest::multipart::Part::bytes(payload).file_name("train.jsonl"),
        );
    let response = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(MANAGED_KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    let file: Value = response.json().await.unwrap();
    let received = app.upstream.mock.last().body.len();
    assert_eq!(file["bytes"], received);
    assert!(received > 20_000);
    let record = app.record(&id).await;
    assert_eq!(record.meta.request_bytes as usize, received);
    let content = record.content.unwrap();
    assert!(content.request_truncated);
    assert_eq!(content.request_body.len(), 4096);
}

async fn unknown_and_missing_keys_get_401_in_the_routes_error_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.chat("sk-unknown", chat_body("x")).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(body["error"]["message"].is_string());

    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let response = app
        .client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", "sk-ant-unknown")
        .json(&json!({"model": "claude", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    // Nothing reached the upstream, nothing was recorded.
    assert!(app.upstream.mock.seen().is_empty());
    assert_eq!(app.store.count_records().await.unwrap(), 0);
}

async fn anthropic_route_reads_x_api_key_and_streams(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .post(app.url("/anthropic/v1/messages"))
        .header("x-api-key", MANAGED_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-x", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = record_id(&response);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("event: message_stop"));
    let seen = app.upstream.mock.last();
    assert_eq!(seen.uri, "/v1/messages");
    assert_eq!(seen.headers["x-api-key"], UPSTREAM_SECRET);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    let record = app.record(&id).await;
    assert_eq!(record.meta.route, "anthropic");
    assert_eq!(record.meta.model.as_deref(), Some("claude-x"));
    assert_eq!(record.meta.usage.prompt_tokens, Some(9));
    assert_eq!(record.meta.usage.completion_tokens, Some(4));
}

async fn oversized_bodies_get_413_declared_or_streamed(backend: Backend) {
    let app = spawn_app(backend).await;
    let big = "x".repeat(70_000);
    let response = app
        .chat(
            MANAGED_KEY,
            json!({"model": "m", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
    assert_eq!(response.status(), 413);
    let id = record_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(app.record(&id).await.meta.outcome, Outcome::GatewayError);

    // Chunked, no Content-Length: caught while streaming. The gateway may
    // answer before the client has finished sending, so the client sees the
    // 413 or a closed connection; either way nothing oversized goes through.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 8192])));
    let sent = app
        .client
        .put(app.url("/v1/echo"))
        .bearer_auth(MANAGED_KEY)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(response) = sent {
        assert_eq!(response.status(), 413);
    }
    assert!(app
        .upstream
        .mock
        .seen()
        .iter()
        .all(|s| s.body.len() <= 65_536));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = app
            .store
            .list_records(&custodian::domain::TenantId("acme".into()), 10)
            .await
            .unwrap();
        if records.iter().any(|r| r.method == "PUT" && r.status == 413) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 413 record for the streamed body"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn upstream_down_is_502_and_slow_is_504(backend: Backend) {
    let mut builder = ConfigBuilder::default();
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    builder.routes = Some(format!(
        r#"
[[routes]]
name = "dead"
prefix = "/dead/"
upstream = "http://{closed}/v1/"
profile = "api"
upstream_key = {{ env = "TEST_UPSTREAM_KEY" }}
"#
    ));
    let app = spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let response = app
        .client
        .post(app.url("/dead/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let id = record_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert_eq!(app.record(&id).await.meta.status, 502);

    let app = spawn_app(backend).await;
    let response = app.chat_mode(MANAGED_KEY, &chat_body("x"), "slow").await;
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
}

async fn zdr_tenant_gets_metadata_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let marker = format!("zdr-marker-{}", uuid::Uuid::now_v7());
    let response = app.chat(ZDR_KEY, chat_body(&marker)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-custodian-training-basis"],
        "zero_data_retention"
    );
    assert_eq!(
        response.headers()["x-custodian-retention"],
        "content=none; metadata=365d"
    );
    let id = record_id(&response);
    assert!(response.text().await.unwrap().contains(&marker));
    let record = app.record(&id).await;
    assert!(record.content.is_none());
    assert!(record.meta.zero_data_retention);
    assert!(record.meta.content_expires_at.is_none());
    assert_eq!(record.meta.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(record.meta.usage.total_tokens, Some(18));
}

async fn gateway_and_hop_by_hop_headers_do_not_cross(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(PASSTHROUGH_KEY)
        .header("x-custodian-training", "off")
        .header("x-custodian-training-basis", "explicit_opt_in")
        .header("x-custodian-tenant", "acme")
        .header("x-request-id", "req-from-client-42")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("proxy-authorization", "Basic abc")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-custodian-training"], "denied");
    assert_eq!(
        response.headers()["x-custodian-training-basis"],
        "request_opt_out"
    );
    assert_eq!(response.headers()["x-request-id"], "req-from-client-42");
    let id = record_id(&response);
    let seen = app.upstream.mock.last();
    for name in [
        "x-custodian-training",
        "x-custodian-training-basis",
        "x-custodian-tenant",
        "x-hop",
        "proxy-authorization",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-request-id"], "req-from-client-42");
    let record = app.record(&id).await;
    assert_eq!(record.meta.tenant.0, "beta");
    assert_eq!(record.meta.request_id, "req-from-client-42");
    assert_eq!(record.meta.training.basis, TrainingBasis::RequestOptOut);
}

async fn traversal_paths_and_unknown_routes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/v1/%2e%2e/admin", "/v1/files%2F..%2Fsecret", "/nowhere/x"] {
        let response = app.get(path).await;
        assert!(
            matches!(response.status().as_u16(), 400 | 404),
            "{path}: {}",
            response.status()
        );
    }
    assert!(app.upstream.mock.seen().is_empty());
}

async fn graceful_stop_flushes_every_answered_request(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut answered = 0;
    let calls = (0..40).map(|i| app.chat(MANAGED_KEY, chat_body(&format!("n{i}"))));
    for response in futures_util::future::join_all(calls).await {
        if response.status() == 200 {
            answered += 1;
        }
    }
    assert_eq!(answered, 40);
    app.stop().await;
    assert_eq!(app.store.count_records().await.unwrap(), answered);
}

async fn admin_listener_serves_health_readiness_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    app.chat(MANAGED_KEY, chat_body("x")).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = app
        .client
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    app.wait_for_records(1).await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "custodian_requests_total",
        "custodian_upstream_first_byte_seconds",
        "custodian_records_written_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // The admin endpoints are not on the proxy listener.
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_ne!(response.status(), 200);
}

async fn bodiless_responses_are_recorded_as_completed(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .head(app.url("/v1/models"))
        .bearer_auth(MANAGED_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = app.record(&record_id(&response)).await;
    assert_eq!(record.meta.method, "HEAD");
    assert_eq!(record.meta.outcome, Outcome::Completed);
}

async fn upstream_is_asked_for_identity_encoding(backend: Backend) {
    let app = spawn_app(backend).await;
    app.client
        .get(app.url("/v1/models"))
        .bearer_auth(MANAGED_KEY)
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.upstream.mock.last().headers["accept-encoding"],
        "identity"
    );
}

/// With a record queue far smaller than the load, requests wait for a place
/// (backpressure) rather than their records being dropped.
async fn a_full_record_queue_slows_clients_instead_of_dropping_records(backend: Backend) {
    let builder = ConfigBuilder {
        extra: "[writer]\nqueue_capacity = 1\nbatch_size = 1\nmax_enqueue_wait = \"10s\"\n".into(),
        ..ConfigBuilder::default()
    };
    let mut app = spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let calls = (0..30).map(|i| app.chat(MANAGED_KEY, chat_body(&format!("q{i}"))));
    let answered = futures_util::future::join_all(calls)
        .await
        .iter()
        .filter(|r| r.status() == 200)
        .count() as i64;
    assert_eq!(answered, 30);
    app.stop().await;
    assert_eq!(app.store.count_records().await.unwrap(), answered);
}

/// A stream that outlives the drain deadline must not keep the process
/// from exiting (it holds a place in the record queue).
async fn shutdown_is_bounded_by_an_endless_stream(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut body = chat_body("forever");
    body["stream"] = json!(true);
    let response = app.chat_mode(MANAGED_KEY, &body, "hold").await;
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    // Drain (5 s) plus the writer's grace (5 s); the guard only catches a hang.
    tokio::time::timeout(Duration::from_secs(60), app.stop())
        .await
        .expect("the gateway stops although a stream is still open");
    drop(stream);
}

/// Beyond `server.max_concurrent_requests` in flight (open streams count),
/// new requests get 503 with `retry-after`; places come back as streams end.
async fn excess_concurrent_requests_are_shed_with_retry_after(backend: Backend) {
    let builder = ConfigBuilder {
        server: "max_concurrent_requests = 2".into(),
        ..ConfigBuilder::default()
    };
    let app = spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let streaming =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let first = app.chat_mode(MANAGED_KEY, &streaming, "hold").await;
    let second = app.chat_mode(MANAGED_KEY, &streaming, "hold").await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let shed = app.chat(MANAGED_KEY, chat_body("x")).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let error: Value = shed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "overloaded");
    // The held streams end: their places are free again.
    // Released repeatedly: a stream may not be waiting yet at the first call.
    let release = app.upstream.mock.release.clone();
    let releaser = tokio::spawn(async move {
        loop {
            release.notify_waiters();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    first.text().await.unwrap();
    second.text().await.unwrap();
    releaser.abort();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = app.chat(MANAGED_KEY, chat_body("x")).await.status();
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "places never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

both_stores!(
    excess_concurrent_requests_are_shed_with_retry_after,
    shutdown_is_bounded_by_an_endless_stream,
    a_full_record_queue_slows_clients_instead_of_dropping_records,
    bodiless_responses_are_recorded_as_completed,
    upstream_is_asked_for_identity_encoding,
    json_call_is_relayed_byte_for_byte_and_recorded,
    managed_key_is_swapped_for_the_upstream_credential,
    passthrough_key_is_forwarded_unchanged,
    sse_events_reach_the_client_while_upstream_holds_the_rest,
    client_disconnect_mid_stream_cancels_upstream_and_is_recorded,
    upstream_errors_pass_through_unchanged,
    get_delete_query_strings_and_multipart_pass_through,
    unknown_and_missing_keys_get_401_in_the_routes_error_shape,
    anthropic_route_reads_x_api_key_and_streams,
    oversized_bodies_get_413_declared_or_streamed,
    upstream_down_is_502_and_slow_is_504,
    zdr_tenant_gets_metadata_only,
    gateway_and_hop_by_hop_headers_do_not_cross,
    traversal_paths_and_unknown_routes_are_refused,
    graceful_stop_flushes_every_answered_request,
    admin_listener_serves_health_readiness_and_metrics,
);
