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
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
