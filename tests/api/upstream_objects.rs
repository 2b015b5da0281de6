//! The loopback upstream's stateful APIs, as the providers shape them: one
//! account (every tenant of a shared credential lands here), objects with
//! real id shapes, lists newest first with `limit`, `after`, `has_more`,
//! `first_id` and `last_id`, 404s in the OpenAI error shape. Files,
//! batches (with an output file), responses (plain and streamed, stored
//! unless `"store": false`), conversations, vector stores, fine-tuning
//! jobs, stored chat completions and Anthropic message batches.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::upstream::Mock;

/// Collections by their path after `/v1/`, with the id prefix and the
/// `object` name of their items.
const COLLECTIONS: &[(&str, &str, &str)] = &[
    ("files", "file-", "file"),
    ("batches", "batch_", "batch"),
    ("responses", "resp_", "response"),
    ("conversations", "conv_", "conversation"),
    ("vector_stores", "vs_", "vector_store"),
    ("fine_tuning/jobs", "ftjob-", "fine_tuning.job"),
    ("chat/completions", "chatcmpl-", "chat.completion"),
    ("messages/batches", "msgbatch_", "message_batch"),
];

/// The account's objects, each collection in creation order.
#[derive(Default)]
pub struct Objects {
    by_collection: BTreeMap<&'static str, Vec<Value>>,
    clock: AtomicU64,
}

pub type Shared = Arc<Mutex<Objects>>;

impl Objects {
    /// Keep `object` in `collection` with a fresh id; returns it.
    pub fn create(&mut self, collection: &'static str, mut object: Map<String, Value>) -> Value {
        let (_, prefix, kind) = COLLECTIONS
            .iter()
            .find(|(c, _, _)| *c == collection)
            .unwrap();
        let id = format!("{prefix}{}", uuid::Uuid::now_v7().simple());
        let created = 1_700_000_000 + self.clock.fetch_add(1, Ordering::SeqCst);
        object.insert("id".into(), json!(id));
        object.insert("object".into(), json!(kind));
        object.insert("created_at".into(), json!(created));
        let object = Value::Object(object);
        self.by_collection
            .entry(collection)
            .or_default()
            .push(object.clone());
        object
    }

    fn get(&self, collection: &str, id: &str) -> Option<&Value> {
        self.by_collection
            .get(collection)?
            .iter()
            .find(|o| o["id"] == id)
    }

    fn remove(&mut self, collection: &str, id: &str) -> bool {
        let Some(items) = self.by_collection.get_mut(collection) else {
            return false;
        };
        let before = items.len();
        items.retain(|o| o["id"] != id);
        items.len() < before
    }

    /// A page, newest first, after the id `after`.
    pub fn list(&self, collection: &str, query: &str) -> Value {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        };
        let limit = param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(20usize);
        let mut items: Vec<&Value> = self
            .by_collection
            .get(collection)
            .map_or(Vec::new(), |v| v.iter().rev().collect());
        // OpenAI pages with `after`, Anthropic with `after_id`.
        if let Some(after) = param("after").or_else(|| param("after_id")) {
            let start = items
                .iter()
                .position(|o| o["id"] == after.as_str())
                .map_or(items.len(), |i| i + 1);
            items.drain(..start);
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        json!({
            "object": "list",
            "data": items,
            "first_id": items.first().map(|o| o["id"].clone()),
            "last_id": items.last().map(|o| o["id"].clone()),
            "has_more": has_more,
        })
    }
}

fn not_found(what: &str, id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"message": format!("No such {what}: '{id}'"), "type": "invalid_request_error", "param": "id", "code": null}})),
    )
        .into_response()
}

/// `/v1/{collection}[/{id}[/…]]` on the account's objects.
pub async fn api(State(mock): State<Mock>, request: Request) -> Response {
    let seen = crate::upstream::remember(&mock, request).await;
    let (path, query) = seen.uri.split_once('?').unwrap_or((&seen.uri, ""));
    let path = path.trim_start_matches("/v1/");
    let Some((collection, rest)) = COLLECTIONS.iter().find_map(|(c, _, _)| {
        let rest = path.strip_prefix(c)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| (*c, rest.trim_start_matches('/')))
    }) else {
        return not_found("endpoint", path);
    };
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    let method: Method = seen.method.parse().unwrap();
    let mut objects = mock.objects.lock().unwrap();
    let (id, sub) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, id.is_empty()) {
        (Method::POST, true) => create(&mut objects, collection, &body),
        (Method::GET, true) => Json(objects.list(collection, query)).into_response(),
        // A part of an object (a conversation's item) goes; the object stays.
        (Method::DELETE, false) if !sub.is_empty() => match objects.get(collection, id) {
            Some(_) => {
                Json(json!({"id": sub, "object": "item.deleted", "deleted": true})).into_response()
            }
            None => not_found(collection, id),
        },
        (Method::DELETE, false) => {
            let kind = objects.get(collection, id).map(|o| o["object"].clone());
            match (kind, objects.remove(collection, id)) {
                (Some(kind), true) => {
                    Json(json!({"id": id, "object": kind, "deleted": true})).into_response()
                }
                _ => not_found(collection, id),
            }
        }
        (_, false) => match objects.get(collection, id) {
            Some(object) if sub == "content" => (
                StatusCode::OK,
                object["content"].as_str().unwrap_or("").to_owned(),
            )
                .into_response(),
            Some(object) if sub == "input_items" => {
                Json(json!({"object": "list", "data": object["input"], "has_more": false}))
                    .into_response()
            }
            Some(object) => Json(object.clone()).into_response(),
            None => not_found(collection, id),
        },
        _ => not_found(collection, id),
    }
}

fn create(objects: &mut Objects, collection: &'static str, body: &Value) -> Response {
    let mut fields = Map::new();
    let copy = |fields: &mut Map<String, Value>, names: &[&str]| {
        for name in names {
            if let Some(v) = body.get(*name) {
                fields.insert((*name).to_owned(), v.clone());
            }
        }
    };
    match collection {
        "batches" | "messages/batches" => {
            copy(
                &mut fields,
                &["input_file_id", "endpoint", "completion_window"],
            );
            // Done at once: its output is a file of the same account.
            let output = objects.create(
                "files",
                Map::from_iter([
                    ("purpose".into(), json!("batch_output")),
                    ("content".into(), json!("{\"id\": \"out\"}\n")),
                ]),
            );
            fields.insert("status".into(), json!("completed"));
            fields.insert("output_file_id".into(), output["id"].clone());
            fields.insert("error_file_id".into(), Value::Null);
        }
        "fine_tuning/jobs" => {
            copy(&mut fields, &["training_file", "validation_file", "model"]);
            // Done at once: the model it made is the account's.
            fields.insert("status".into(), json!("succeeded"));
            let model = format!(
                "ft:{}:org::{}",
                body["model"].as_str().unwrap_or("m"),
                uuid::Uuid::now_v7().simple()
            );
            fields.insert("fine_tuned_model".into(), json!(model));
        }
        "vector_stores" => copy(&mut fields, &["name", "file_ids"]),
        "conversations" => copy(&mut fields, &["metadata", "items"]),
        "responses" => return respond(objects, body),
        _ => {}
    }
    Json(objects.create(collection, fields)).into_response()
}

/// `POST /v1/responses`: the answer echoes the input; stored unless
/// `"store": false`; streamed with the typed events when asked.
fn respond(objects: &mut Objects, body: &Value) -> Response {
    let model = body["model"].as_str().unwrap_or("mock-gpt").to_owned();
    let input = match &body["input"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| {
                i["content"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| i["content"][0]["text"].as_str().map(str::to_owned))
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let text = format!("echo: {input}");
    let mut fields = Map::new();
    fields.insert("model".into(), json!(model));
    fields.insert("status".into(), json!("completed"));
    fields.insert("input".into(), body["input"].clone());
    fields.insert("instructions".into(), body["instructions"].clone());
    fields.insert(
        "previous_response_id".into(),
        body["previous_response_id"].clone(),
    );
    fields.insert(
        "store".into(),
        json!(body["store"].as_bool().unwrap_or(true)),
    );
    fields.insert(
        "output".into(),
        json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}]),
    );
    fields.insert(
        "usage".into(),
        json!({"input_tokens": 6, "output_tokens": 4, "total_tokens": 10}),
    );
    let response = match body["store"].as_bool() {
        Some(false) => {
            let mut response = fields.clone();
            response.insert(
                "id".into(),
                json!(format!("resp_{}", uuid::Uuid::now_v7().simple())),
            );
            response.insert("object".into(), json!("response"));
            Value::Object(response)
        }
        _ => objects.create("responses", fields),
    };
    if body["stream"].as_bool() != Some(true) {
        return Json(response).into_response();
    }
    let mut created = response.clone();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    let events = [
        (
            "response.created",
            json!({"type": "response.created", "sequence_number": 0, "response": created}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": "echo: "}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": input}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "sequence_number": 3, "response": response}),
        ),
    ];
    let text: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(Bytes::from(text)))
        .unwrap()
}
