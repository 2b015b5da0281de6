//! The rules see every body they are meant to see: whatever its framing
//! (chunked, sized, larger than the capture), its encoding (every layer,
//! every header value), its format (JSON keys and values, escapes, JSON
//! Lines in a multipart upload, plain text); a body they cannot read in
//! full is flagged, blocked or allowed as the profile says, never passed or
//! dropped silently; and held bodies share one memory budget.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use custodian::domain::clock::SystemClock;
use custodian::domain::verdict::RuleAction;
use custodian::domain::{Outcome, RecordId};
use serde_json::{json, Value};

use crate::helpers::*;

const RULES: &str = r#"
[[rules]]
name = "ssn"
action = "block"
severity = "critical"
patterns = ['\b\d{3}-\d{2}-\d{4}\b']
"#;

const STRICT_KEY: &str = "cst_test_managed_key_strict";
const LENIENT_KEY: &str = "cst_test_managed_key_lenient";

fn builder(server: &str) -> ConfigBuilder {
    let mut builder = ConfigBuilder {
        extra: RULES.into(),
        server: server.into(),
        ..ConfigBuilder::default()
    };
    builder.profiles.push_str(
        "\n[profiles.strict]\nunscannable = \"block\"\n\n[profiles.lenient]\nunscannable = \"allow\"\n",
    );
    builder.tenants.push_str(&format!(
        "\n[[tenants]]\nid = \"strict\"\nprofile = \"strict\"\nmanaged_keys = [\"{}\"]\n\n[[tenants]]\nid = \"lenient\"\nprofile = \"lenient\"\nmanaged_keys = [\"{}\"]\n",
        custodian::proxy::auth::managed_key_hash(STRICT_KEY),
        custodian::proxy::auth::managed_key_hash(LENIENT_KEY),
    ));
    builder
}

async fn app(backend: Backend, server: &str) -> TestApp {
    spawn_app_with(backend, builder(server), Arc::new(SystemClock)).await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn chat(text: &str) -> Vec<u8> {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
        .to_string()
        .into_bytes()
}

/// A body in one of the shapes a client may send.
struct Shape {
    name: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
}

fn shape(name: &'static str, content_type: &str, body: Vec<u8>) -> Shape {
    Shape {
        name,
        path: "/v1/chat/completions",
        headers: vec![("content-type", content_type.to_owned())],
        body,
        chunked: false,
    }
}

fn batch_upload(jsonl: &str) -> Shape {
    let body = format!(
        "--BnD\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
--BnD\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n\
Content-Type: application/octet-stream\r\n\r\n{jsonl}\r\n--BnD--\r\n"
    );
    Shape {
        path: "/v1/files",
        ..shape(
            "a batch input file",
            "multipart/form-data; boundary=BnD",
            body.into_bytes(),
        )
    }
}

/// Every shape carries the same SSN, hidden a different way.
fn hiding_places() -> Vec<Shape> {
    let padded = format!("{} my ssn is 123-45-6789", "lorem ipsum ".repeat(2_000));
    let nested = format!(
        "{}\"\\u0031\\u0032\\u0033-45-6789\"{}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    vec![
        Shape {
            chunked: true,
            ..shape("chunked JSON", "application/json", chat("ssn 123-45-6789"))
        },
        shape(
            "JSON past the capture cap",
            "application/json",
            chat(&padded),
        ),
        shape(
            "an object key",
            "application/json",
            br#"{"model":"m","metadata":{"123-45-6789":"x"}}"#.to_vec(),
        ),
        shape(
            "JSON escapes",
            "application/json",
            br#"{"messages":[{"content":"\u0031\u0032\u0033\u002d45-6789"}]}"#.to_vec(),
        ),
        shape("deep nesting", "application/json", nested.into_bytes()),
        shape("plain text", "text/plain", b"ssn 123-45-6789".to_vec()),
        shape("no content type", "", b"{\"x\": \"123-45-6789\"}".to_vec()),
        Shape {
            headers: vec![
                ("content-type", "application/json".into()),
                ("content-encoding", "gzip".into()),
                ("content-encoding", "gzip".into()),
            ],
            ..shape(
                "gzip twice, two headers",
                "",
                gzip(&gzip(&chat("123-45-6789"))),
            )
        },
        Shape {
            headers: vec![
                ("content-type", "application/json".into()),
                ("content-encoding", "gzip".into()),
            ],
            body: [gzip(br#"{"a":"fine","#), gzip(br#""b":"123-45-6789"}"#)].concat(),
            ..shape("a second gzip member", "", Vec::new())
        },
        batch_upload(
            "{\"custom_id\":\"1\",\"body\":{\"messages\":[{\"content\":\"hi\"}]}}\n\
             {\"custom_id\":\"2\",\"body\":{\"messages\":[{\"content\":\"ssn 123-45-6789\"}]}}",
        ),
    ]
}

async fn send(app: &TestApp, key: &str, shape: &Shape) -> reqwest::Response {
    let mut request = app.client.post(app.url(shape.path)).bearer_auth(key);
    for (name, value) in &shape.headers {
        if !value.is_empty() {
            request = request.header(*name, value);
        }
    }
    let body = match shape.chunked {
        // No content-length: the body streams in pieces.
        true => {
            let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
                shape.body.chunks(7).map(|c| Ok(c.to_vec())).collect();
            reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
        }
        false => reqwest::Body::from(shape.body.clone()),
    };
    request.body(body).send().await.unwrap()
}

async fn a_block_rule_sees_every_body_shape_before_it_is_forwarded(backend: Backend) {
    let app = app(backend, "").await;
    for shape in hiding_places() {
        let response = send(&app, MANAGED_KEY, &shape).await;
        let status = response.status();
        let id = record_id(&response);
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, 403, "{}: {error}", shape.name);
        assert_eq!(
            error["error"]["code"], "blocked_by_policy",
            "{}",
            shape.name
        );
        assert!(
            app.upstream.mock.seen().is_empty(),
            "{} was forwarded",
            shape.name
        );
        // The reviewer gets what was sent (up to the capture cap).
        let record = app.record(&id).await;
        let content = record.content.expect("a blocked request keeps its content");
        let cap = app.config.capture.max_body_bytes;
        assert_eq!(
            content.request_body,
            shape.body[..shape.body.len().min(cap)],
            "{}",
            shape.name
        );
        assert_eq!(content.request_truncated, shape.body.len() > cap);
    }
    // The same shapes without the number go through unchanged.
    let clean =
        batch_upload("{\"custom_id\":\"1\",\"body\":{\"messages\":[{\"content\":\"hi\"}]}}");
    let response = send(&app, MANAGED_KEY, &clean).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.upstream.mock.last().body,
        clean.body,
        "forwarded byte for byte"
    );
    let padded = shape(
        "long and clean",
        "application/json",
        chat(&"lorem ipsum ".repeat(2_000)),
    );
    let response = send(
        &app,
        MANAGED_KEY,
        &Shape {
            chunked: true,
            ..padded
        },
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.upstream.mock.last().body.len(),
        chat(&"lorem ipsum ".repeat(2_000)).len()
    );
}

/// Past the scan limit, in an unknown encoding, or not text: the profile
/// decides, the item says why, the metric counts.
async fn a_body_the_rules_cannot_read_is_handled_as_the_profile_says(backend: Backend) {
    let app = app(backend, "max_scan_bytes = 2048").await;
    let echo = |shape: Shape| Shape {
        path: "/v1/echo",
        ..shape
    };
    let long = shape(
        "past the scan limit",
        "application/json",
        chat(&"a".repeat(8_000)),
    );
    let unknown = echo(Shape {
        headers: vec![
            ("content-type", "application/json".into()),
            ("content-encoding", "zstd".into()),
        ],
        ..shape(
            "unknown encoding",
            "",
            b"(\xb5/\xfd not really zstd".to_vec(),
        )
    });
    let binary = echo(shape(
        "binary",
        "application/octet-stream",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff".to_vec(),
    ));
    let long_chunked = Shape {
        chunked: true,
        ..shape(
            "chunked past the scan limit",
            "application/json",
            chat(&"b".repeat(8_000)),
        )
    };
    // (On /v1/echo, whose bodies cannot name upstream objects: a body the
    // gateway cannot read there is the rules' concern alone.)
    let cases = [
        (echo(long), "scan_limit"),
        (unknown, "unknown_encoding"),
        (binary, "binary"),
        (echo(long_chunked), "scan_limit"),
    ];
    for (shape, reason) in &cases {
        // flag (the default): forwarded, and the item says why.
        let seen = app.upstream.mock.seen().len();
        let response = send(&app, MANAGED_KEY, shape).await;
        assert_eq!(response.status(), 200, "{}", shape.name);
        assert_eq!(app.upstream.mock.seen().len(), seen + 1);
        assert_eq!(
            app.upstream.mock.last().body,
            shape.body,
            "{}: unchanged",
            shape.name
        );
        let id = RecordId(record_id(&response).parse().unwrap());
        app.record(&id.to_string()).await;
        let item = app.store.review_item(id).await.unwrap().expect("flagged");
        assert_eq!(item.verdicts.len(), 1, "{}", shape.name);
        assert_eq!(item.verdicts[0].rule, "unscannable_body");
        assert_eq!(
            item.verdicts[0].reason.as_deref(),
            Some(*reason),
            "{}",
            shape.name
        );
        assert_eq!(item.action, RuleAction::Flag);

        // block: refused before the upstream sees a byte.
        let seen = app.upstream.mock.seen().len();
        let response = send(&app, STRICT_KEY, shape).await;
        assert_eq!(response.status(), 403, "{}", shape.name);
        let id = record_id(&response);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unscannable_body");
        assert!(error["error"]["message"].as_str().unwrap().contains(reason));
        assert_eq!(
            app.upstream.mock.seen().len(),
            seen,
            "{} forwarded",
            shape.name
        );
        assert_eq!(app.record(&id).await.meta.outcome, Outcome::GatewayError);

        // allow: forwarded, no item, counted.
        let response = send(&app, LENIENT_KEY, shape).await;
        assert_eq!(response.status(), 200);
        let id = RecordId(record_id(&response).parse().unwrap());
        app.record(&id.to_string()).await;
        assert!(app.store.review_item(id).await.unwrap().is_none());
    }
    let metrics = app.metrics().await;
    for reason in ["scan_limit", "unknown_encoding", "binary"] {
        for action in ["flag", "block", "allow"] {
            let label = format!("reason=\"{reason}\"");
            let counted = metrics
                .lines()
                .filter(|l| l.starts_with("custodian_requests_unscanned_total{"))
                .filter(|l| l.contains(&label) && l.contains(&format!("action=\"{action}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            assert!(counted >= 1.0, "{reason}/{action} not counted:\n{metrics}");
        }
    }
}

/// A decompression bomb is a 413 (and garbage a 400) in bounded memory,
/// never forwarded; many at once leave other requests served.
async fn decompression_bombs_are_refused_without_stalling_others(backend: Backend) {
    let app = app(backend, "").await;
    let mut bomb = b"[".to_vec();
    bomb.extend(b"0,".repeat(2 << 20));
    bomb.extend(b"0]");
    let packed = gzip(&bomb);
    let send_bomb = || {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(MANAGED_KEY)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(packed.clone())
            .send()
    };
    let bombs: Vec<_> = (0..8).map(|_| send_bomb()).collect();
    let clean = app.chat(MANAGED_KEY, serde_json::from_slice(&chat("hello")).unwrap());
    let (answers, clean) = tokio::join!(futures_util::future::join_all(bombs), clean);
    for answer in answers {
        assert_eq!(answer.unwrap().status(), 413);
    }
    assert_eq!(clean.status(), 200);
    assert_eq!(
        app.upstream.mock.seen().len(),
        1,
        "only the clean request was forwarded"
    );
}

/// Bodies held whole share `server.max_buffered_bytes`: a request that
/// would exceed it waits briefly, then gets 503 with retry-after; room comes
/// back once the holder is forwarded.
async fn held_bodies_share_one_memory_budget(backend: Backend) {
    // One request holds up to 64 KiB (the body limit); the budget is that.
    let app = app(backend, "max_buffered_bytes = 65536").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let holder = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .send();
    let holder = tokio::spawn(holder);
    // 40 KiB of a JSON string, and the body is not over yet.
    let start = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"#,
        "x".repeat(40_000)
    );
    tx.send(Ok(start.into_bytes())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "application/json")
        .body(chat(&"y".repeat(40_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "1");
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"]["code"], "overloaded");
    tx.send(Ok(br#""}]}"#.to_vec())).await.unwrap();
    drop(tx);
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    // The budget is whole again.
    let third = app
        .chat(
            MANAGED_KEY,
            serde_json::from_slice(&chat(&"z".repeat(40_000))).unwrap(),
        )
        .await;
    assert_eq!(third.status(), 200);
    assert!(
        metric_sum(
            &app.metrics().await,
            "custodian_body_budget_refusals_total",
            ""
        ) >= 1.0
    );
}

/// Requests without a body (GET, HEAD) are counted by rate rules too.
async fn rate_rules_count_requests_without_a_body(backend: Backend) {
    let mut builder = builder("");
    builder
        .extra
        .push_str("\n[[rules]]\nname = \"burst\"\nmax_requests_per_minute = 2\n");
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let response = app.get("/v1/models").await;
        assert_eq!(response.status(), 200);
        ids.push(RecordId(record_id(&response).parse().unwrap()));
    }
    for id in &ids {
        app.record(&id.to_string()).await;
    }
    let flagged: Vec<bool> =
        futures_util::future::join_all(ids.iter().map(|id| app.store.review_item(*id)))
            .await
            .into_iter()
            .map(|item| item.unwrap().is_some())
            .collect();
    assert_eq!(flagged, [false, false, true]);
}

both_stores!(
    rate_rules_count_requests_without_a_body,
    a_block_rule_sees_every_body_shape_before_it_is_forwarded,
    a_body_the_rules_cannot_read_is_handled_as_the_profile_says,
    decompression_bombs_are_refused_without_stalling_others,
    held_bodies_share_one_memory_budget,
);
