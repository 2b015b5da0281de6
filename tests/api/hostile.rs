//! Hostile bytes on the proxy listener, written straight to a socket:
//! request smuggling shapes and malformed headers are refused and reach no
//! upstream.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Send raw bytes; return everything the gateway answers (bounded).
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_until_closed(&mut stream, Duration::from_secs(3))
        .await
        .0
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answer.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

async fn smuggling_and_malformed_headers_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = MANAGED_KEY;
    let smuggled =
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "content-length and transfer-encoding",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                 0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "two different content-lengths",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Content-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}{smuggled}"
            ),
        ),
        (
            "obs-fold",
            format!(
                "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 X-Folded: a\r\n b\r\n\r\n"
            ),
        ),
        (
            "a control byte in a header value",
            format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nX-Bad: a\x01b\r\n\r\n"),
        ),
        (
            "a space before the colon",
            format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer {key}\r\n\r\n"),
        ),
        (
            "chunked with a bad size",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
                 Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (name, request) in cases {
        let before = app.upstream.mock.seen().len();
        let answer = raw(&app, request.as_bytes()).await;
        let got = statuses(&answer);
        assert_eq!(
            got.len(),
            1,
            "{name}: one answer, nothing smuggled: {answer}"
        );
        let reached: Vec<String> = app.upstream.mock.seen()[before..]
            .iter()
            .map(|s| s.uri.clone())
            .collect();
        assert!(
            !reached.iter().any(|uri| uri.contains("models")),
            "{name}: the smuggled request reached the upstream"
        );
        if name == "content-length and transfer-encoding" {
            // RFC 9112 section 6.3: Transfer-Encoding wins and the connection
            // is closed after the message, so its tail is never a request.
            assert!(reached.len() <= 1, "{name}: {reached:?}");
        } else {
            assert!((400..500).contains(&got[0]), "{name}: {got:?}\n{answer}");
            assert!(
                reached.is_empty(),
                "{name} reached the upstream: {reached:?}"
            );
        }
    }
    // The control: a well-formed request on a raw socket works.
    let ok = raw(
        &app,
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&ok), [200], "{ok}");
}

both_stores!(smuggling_and_malformed_headers_are_refused);

/// The gateway with tight limits, so that the slow-client cases finish quickly.
async fn strict_app(backend: Backend) -> TestApp {
    let builder = ConfigBuilder {
        server: "header_read_timeout = \"300ms\"\nclient_body_timeout = \"300ms\"\n\
                 max_header_bytes = 16384\nmax_headers = 50\n"
            .into(),
        ..Default::default()
    };
    spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await
}

/// What the gateway sends until it closes the connection, or until
/// `within` has passed; and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The answer, once the gateway has closed the connection (bounded); None
/// if it is still open after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let (answer, closed) = read_until_closed(stream, within).await;
    closed.then_some(answer)
}

/// Slowloris: headers that never end are cut off at the header-read
/// timeout, and nothing reaches the upstream.
async fn unfinished_headers_are_cut_off(backend: Backend) {
    let app = strict_app(backend).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MANAGED_KEY}\r\n").as_bytes())
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A byte now and then does not keep the connection alive.
        if stream.write_all(b"X-Drip: 1\r\n").await.is_err() {
            break;
        }
    }
    assert!(
        until_closed(&mut stream, Duration::from_secs(3))
            .await
            .is_some(),
        "the connection is still open"
    );
    assert!(app.upstream.mock.seen().is_empty());
}

/// A body that stops arriving is answered 408 after the pause limit, whether
/// it was being read whole or streamed upstream, and leaves a record.
async fn a_stalled_body_is_answered_408(backend: Backend) {
    let app = strict_app(backend).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Small (read whole, under the capture cap) and large (streamed).
    for (declared, sent) in [(100usize, 10usize), (20_000, 9_000)] {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MANAGED_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b' '; sent]).await.unwrap();
        let answer = until_closed(&mut stream, Duration::from_secs(5))
            .await
            .expect("the gateway answers and closes");
        assert_eq!(statuses(&answer), [408], "{declared}: {answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        let id = answer
            .lines()
            .find_map(|l| l.strip_prefix("x-custodian-record-id: "))
            .expect("a record id")
            .trim()
            .to_owned();
        let record = app.record(&id).await;
        assert_eq!(record.meta.status, 408);
        assert_eq!(
            record.meta.outcome,
            custodian::domain::Outcome::GatewayError
        );
    }
}

/// Too many header fields, or too many header bytes: 431, nothing forwarded.
async fn oversized_headers_are_431(backend: Backend) {
    let app = strict_app(backend).await;
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    for (name, extra) in [("count", many), ("size", big)] {
        let answer = raw(
            &app,
            format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MANAGED_KEY}\r\n{extra}\r\n").as_bytes(),
        )
        .await;
        assert_eq!(statuses(&answer), [431], "{name}: {answer}");
    }
    assert!(app.upstream.mock.seen().is_empty());
}

/// A client that stops reading an SSE stream: the gateway stops reading the
/// upstream (backpressure) instead of buffering what it cannot deliver, and
/// the pause does not count as the upstream going idle.
async fn a_slow_sse_reader_holds_back_the_upstream(backend: Backend) {
    let app = spawn_app(backend).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MANAGED_KEY}\r\n\
         x-mock-mode: firehose\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // Read nothing more for longer than the upstream idle timeout (2 s):
    // only socket buffers fill, and the client's pause is not the upstream's.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let produced = app
        .upstream
        .mock
        .produced
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        produced < 64 * 1024 * 1024,
        "the upstream sent {produced} bytes to a client that read 1 KiB"
    );
    // Reading again lets the stream go on.
    let mut buf = vec![0u8; 1 << 20];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .upstream
        .mock
        .produced
        .load(std::sync::atomic::Ordering::SeqCst)
        <= produced
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream did not resume"
        );
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        assert!(!matches!(read, Ok(Ok(0))), "the stream was cut");
    }
}

both_stores!(
    unfinished_headers_are_cut_off,
    a_stalled_body_is_answered_408,
    oversized_headers_are_431,
    a_slow_sse_reader_holds_back_the_upstream,
);
