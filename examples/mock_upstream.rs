//! A fast loopback stand-in for an OpenAI-compatible API, for the benchmark
//! (`bench/run.sh`): `POST /v1/chat/completions` answers ~1 KiB of JSON, or,
//! with `"stream": true`, 20 SSE chunks and `[DONE]`.
//!
//! `cargo run --release --example mock_upstream -- 127.0.0.1:18000`

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;

const CHUNKS: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18000".to_owned())
        .parse()
        .map_err(std::io::Error::other)?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(
            "the mock binds loopback addresses only",
        ));
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    // Without TCP_NODELAY, small SSE frames meet delayed ACKs: 40 ms stalls.
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    eprintln!("mock upstream on {addr}");
    axum::serve(listener, app).await
}

async fn chat(body: Bytes) -> Response {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    let streamed = contains(b"\"stream\":true") || contains(b"\"stream\": true");
    if streamed {
        // One frame per event, as a real API streams tokens.
        let events = (0..CHUNKS)
            .map(|i| format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"mock-gpt\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i:03} lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua\"}},\"finish_reason\":null}}]}}\n\n"
            ))
            .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
            .map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e)));
        let body = Body::from_stream(futures_util::stream::iter(events));
        return ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response();
    }
    let filler = "lorem ipsum dolor sit amet ".repeat(28);
    let json = format!(
        "{{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"mock-gpt\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{filler}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":200,\"completion_tokens\":180,\"total_tokens\":380}}}}"
    );
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}
