//! A real HTTP upstream on loopback speaking the OpenAI (and Anthropic
//! Messages) wire format, streaming included. Its behaviour per request is
//! chosen with an `x-mock-mode` header; it remembers what it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Mock {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Streams in `hold` mode wait here after their first event.
    pub release: Arc<Notify>,
    /// Streams dropped before their end (the gateway cancelled them).
    pub cancelled: Arc<AtomicUsize>,
    pub completed: Arc<AtomicUsize>,
    /// While set, the moderation endpoint answers 500.
    pub moderation_down: Arc<std::sync::atomic::AtomicBool>,
    /// While set, the moderation endpoint takes a second to answer.
    pub moderation_slow: Arc<std::sync::atomic::AtomicBool>,
    pub moderation_calls: Arc<AtomicUsize>,
    /// Bytes a `firehose` stream has produced so far.
    pub produced: Arc<AtomicUsize>,
    /// The one account's stateful objects (every tenant of a shared
    /// credential lands in it).
    pub objects: crate::upstream_objects::Shared,
}

impl Mock {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub mock: Mock,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}/v1/", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

pub async fn spawn() -> Upstream {
    let mock = Mock::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1/echo", get(echo).post(echo).put(echo))
        .route("/v1/files", post(upload).get(crate::upstream_objects::api))
        .route("/v1/moderations", post(moderations))
        .route("/v1/messages", post(messages))
        .fallback(crate::upstream_objects::api)
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Upstream { addr, mock }
}

pub(crate) async fn remember(mock: &Mock, request: Request) -> Seen {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    };
    mock.seen.lock().unwrap().push(seen.clone());
    seen
}

fn mode(seen: &Seen) -> &str {
    seen.headers
        .get("x-mock-mode")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn chat(State(mock): State<Mock>, request: Request) -> Response {
    let seen = remember(&mock, request).await;
    match mode(&seen) {
        "slow" => tokio::time::sleep(Duration::from_secs(5)).await,
        "error429" => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "7"), ("x-upstream-trace", "t-1")],
                Json(json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response()
        }
        _ => {}
    }
    let Ok(request): Result<Value, _> = serde_json::from_slice(&seen.body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response();
    };
    let model = request["model"].as_str().unwrap_or("mock-gpt").to_owned();
    let prompt = request["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if request["stream"].as_bool() == Some(true) {
        return sse(mock, model, prompt, mode(&seen).to_owned());
    }
    let answer = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("echo: {prompt}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    });
    if mode(&seen) == "cut" {
        return cut_short(answer.to_string().into_bytes());
    }
    if request["store"].as_bool() == Some(true) {
        // A stored completion is an object of the account, with its id.
        let Value::Object(mut fields) = answer else {
            unreachable!()
        };
        fields.remove("id");
        fields.remove("object");
        let stored = mock
            .objects
            .lock()
            .unwrap()
            .create("chat/completions", fields);
        return Json(stored).into_response();
    }
    Json(answer).into_response()
}

/// A sized JSON answer whose connection breaks halfway through its body.
fn cut_short(body: Vec<u8>) -> Response {
    let full = body.len();
    let half = Bytes::from(body[..full / 2].to_vec());
    // The break comes after the half has left the socket, as on a real
    // network (an error polled at once would abort before the headers).
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok(half)]),
        futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("upstream reset"))
        }),
    );
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", full.to_string())
        .body(Body::from_stream(stream))
        .unwrap()
}

/// How much a `firehose` stream sends before it ends.
pub const FIREHOSE_BYTES: usize = 256 * 1024 * 1024;

/// Counts a stream as cancelled if it is dropped before its last event.
struct StreamGuard {
    mock: Mock,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.mock.completed
        } else {
            &self.mock.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn sse(mock: Mock, model: String, prompt: String, mode: String) -> Response {
    let stream = async_stream(mock, model, prompt, mode);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn chunk(model: &str, delta: Value) -> Bytes {
    let event = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    Bytes::from(format!("data: {event}\n\n"))
}

fn async_stream(
    mock: Mock,
    model: String,
    prompt: String,
    mode: String,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut guard = StreamGuard {
            mock: mock.clone(),
            finished: false,
        };
        if tx
            .send(Ok(chunk(
                &model,
                json!({"role": "assistant", "content": ""}),
            )))
            .await
            .is_err()
        {
            return;
        }
        if mode == "hold" {
            tokio::select! {
                () = mock.release.notified() => {}
                () = tx.closed() => return,
            }
        }
        if mode == "firehose" {
            // As fast as the reader takes it, up to FIREHOSE_BYTES: the
            // channel holds one event, so what is produced is what was taken.
            let event = Bytes::from(format!("data: {}\n\n", "x".repeat(16 * 1024)));
            while mock.produced.load(Ordering::SeqCst) < FIREHOSE_BYTES {
                if tx.send(Ok(event.clone())).await.is_err() {
                    return;
                }
                mock.produced.fetch_add(event.len(), Ordering::SeqCst);
            }
            guard.finished = true;
            return;
        }
        if mode == "reset" {
            // Let the first event leave the socket: a reset right behind it
            // can discard it before it is sent, and the test would see nothing.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = tx.send(Err(std::io::Error::other("upstream reset"))).await;
            return;
        }
        for word in ["echo:", " ", prompt.as_str()] {
            if tx
                .send(Ok(chunk(&model, json!({"content": word}))))
                .await
                .is_err()
            {
                return;
            }
        }
        let usage = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}});
        let _ = tx.send(Ok(Bytes::from(format!("data: {usage}\n\n")))).await;
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        guard.finished = true;
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn models(State(mock): State<Mock>, request: Request) -> Response {
    remember(&mock, request).await;
    Json(json!({"object": "list", "data": [{"id": "mock-gpt", "object": "model", "owned_by": "mock"}]})).into_response()
}

async fn echo(State(mock): State<Mock>, request: Request) -> Response {
    let seen = remember(&mock, request).await;
    Json(json!({"method": seen.method, "uri": seen.uri, "bytes": seen.body.len()})).into_response()
}

async fn upload(State(mock): State<Mock>, request: Request) -> Response {
    let seen = remember(&mock, request).await;
    let content_type = seen
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("multipart/form-data") {
        return (StatusCode::BAD_REQUEST, "expected multipart").into_response();
    }
    let purpose = if seen.body.windows(9).any(|w| w == b"fine-tune") {
        "fine-tune"
    } else if seen.body.windows(5).any(|w| w == b"batch") {
        "batch"
    } else {
        "other"
    };
    let file = serde_json::Map::from_iter([
        ("bytes".to_owned(), json!(seen.body.len())),
        ("purpose".to_owned(), json!(purpose)),
        (
            "content".to_owned(),
            json!(String::from_utf8_lossy(&seen.body)),
        ),
    ]);
    Json(mock.objects.lock().unwrap().create("files", file)).into_response()
}

/// OpenAI's moderation shape: "kill" scores high on violence.
async fn moderations(State(mock): State<Mock>, body: Bytes) -> Response {
    mock.moderation_calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if mock
        .moderation_slow
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if mock
        .moderation_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let input: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = input["input"].as_str().unwrap_or("").to_lowercase();
    let violence = if text.contains("kill") { 0.97 } else { 0.01 };
    Json(
        json!({"id": "modr-mock", "model": "omni-moderation-latest", "results": [{
        "flagged": violence > 0.5,
        "categories": {"violence": violence > 0.5, "harassment": false},
        "category_scores": {"violence": violence, "harassment": 0.02}}]}),
    )
    .into_response()
}

async fn messages(State(mock): State<Mock>, request: Request) -> Response {
    let seen = remember(&mock, request).await;
    let request: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-mock")
        .to_owned();
    if request["stream"].as_bool() == Some(true) {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let body: String = events
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect();
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(body))
            .unwrap();
    }
    Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 9, "output_tokens": 4}}))
    .into_response()
}
