//! The upstream client honours the egress proxy the environment names
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), as operators
//! behind one expect: every upstream connection is a CONNECT tunnel through
//! it, and a host `NO_PROXY` names is reached directly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::{serve_config, spawn_serve_with, wait_for_logged};
use crate::helpers::{Backend, TestDb};

const KEY: &str = "cst_egress_proxy_test_key";

/// A CONNECT proxy on loopback: each tunnel it opens is counted.
async fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tunnels);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|rest| rest.split_whitespace().next())
                else {
                    let _ = client
                        .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                        .await;
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, tunnels)
}

async fn chat(proxy_addr: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{proxy_addr}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_go_through_the_egress_proxy_unless_no_proxy_names_the_host() {
    let upstream = crate::upstream::spawn().await;
    let (proxy, tunnels) = connect_proxy().await;
    let proxy_url = format!("http://{proxy}");
    let db = TestDb::new(Backend::Sqlite).await;
    let tenant = format!(
        "managed_keys = [\"{}\"]\n",
        custodian::proxy::auth::managed_key_hash(KEY)
    );
    let cases: [(&[(&str, &str)], bool); 3] = [
        (
            &[("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "")],
            true,
        ),
        (&[("ALL_PROXY", proxy_url.as_str()), ("NO_PROXY", "")], true),
        (
            &[
                ("HTTP_PROXY", proxy_url.as_str()),
                ("NO_PROXY", "127.0.0.1"),
            ],
            false,
        ),
    ];
    for (env, tunnelled) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = serve_config(dir.path(), db.url(), &tenant, &upstream.url(), "");
        let log = dir.path().join("gateway.log");
        let mut child = spawn_serve_with(&config, &log, env);
        let addr = wait_for_logged(&log, "proxy_addr=").await;
        let before = tunnels.load(Ordering::SeqCst);
        let status = chat(&addr).await;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            status,
            200,
            "{env:?}: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert_eq!(
            tunnels.load(Ordering::SeqCst) > before,
            tunnelled,
            "{env:?}"
        );
    }
}
