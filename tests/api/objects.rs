//! Tenants own their upstream objects. Two managed tenants share the
//! route's one upstream credential (one account upstream); neither may
//! read, download, list, use or delete the other's files, batches,
//! responses, conversations, vector stores, fine-tuning jobs or stored
//! completions, and such a request never reaches the upstream. The owner's
//! operations work; a pass-through tenant's unknown ids are forwarded; a
//! ZDR tenant's requests make the upstream keep nothing.

use std::sync::Arc;

use custodian::domain::clock::SystemClock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const OTHER_KEY: &str = "cst_test_managed_key_other";
const SOLO_KEY: &str = "cst_test_managed_key_solo";

fn builder() -> ConfigBuilder {
    let mut builder = ConfigBuilder::default();
    builder.tenants.push_str(&format!(
        "\n[[tenants]]\nid = \"other\"\nmanaged_keys = [\"{}\"]\n\n[[tenants]]\nid = \"solo\"\nmanaged_keys = [\"{}\"]\nupstream_keys = {{ openai = {{ env = \"TEST_TENANT_UPSTREAM_KEY\" }} }}\n",
        custodian::proxy::auth::managed_key_hash(OTHER_KEY),
        custodian::proxy::auth::managed_key_hash(SOLO_KEY),
    ));
    builder
}

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, builder(), Arc::new(SystemClock)).await
}

async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload(app: &TestApp, key: &str, purpose: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("purpose", purpose.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"{\"custom_id\": \"1\"}\n".to_vec())
                .file_name("in.jsonl"),
        );
    let response = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let file: Value = response.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

/// Everything acme owns, made through the gateway.
struct Owned {
    file: String,
    batch: String,
    batch_output: String,
    response: String,
    conversation: String,
    vector_store: String,
    job: String,
    completion: String,
}

async fn acme_makes_one_of_each(app: &TestApp) -> Owned {
    let file = upload(app, MANAGED_KEY, "batch").await;
    let made = |path: &'static str, body: Value| async move {
        let (status, object) = call(app, MANAGED_KEY, Method::POST, path, Some(body)).await;
        assert_eq!(status, 200, "{path}: {object}");
        object
    };
    let batch = made("/v1/batches", json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"})).await;
    let response = made("/v1/responses", json!({"model": "m", "input": "hello"})).await;
    let conversation = made("/v1/conversations", json!({})).await;
    let vector_store = made(
        "/v1/vector_stores",
        json!({"name": "docs", "file_ids": [file]}),
    )
    .await;
    let job = made(
        "/v1/fine_tuning/jobs",
        json!({"model": "m", "training_file": file}),
    )
    .await;
    let completion = made(
        "/v1/chat/completions",
        json!({"model": "m", "store": true, "messages": [{"role": "user", "content": "keep me"}]}),
    )
    .await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    Owned {
        batch_output: batch["output_file_id"].as_str().unwrap().to_owned(),
        file,
        batch: id(&batch),
        response: id(&response),
        conversation: id(&conversation),
        vector_store: id(&vector_store),
        job: id(&job),
        completion: id(&completion),
    }
}

/// Every way of reaching acme's objects, path or body.
fn reaches(o: &Owned) -> Vec<(Method, String, Option<Value>)> {
    let get = |p: String| (Method::GET, p, None);
    vec![
        get(format!("/v1/files/{}", o.file)),
        get(format!("/v1/files/{}/content", o.file)),
        get(format!("/v1/files/{}/content", o.batch_output)),
        (Method::DELETE, format!("/v1/files/{}", o.file), None),
        get(format!("/v1/batches/{}", o.batch)),
        (
            Method::POST,
            format!("/v1/batches/{}/cancel", o.batch),
            None,
        ),
        get(format!("/v1/responses/{}", o.response)),
        get(format!("/v1/responses/{}/input_items", o.response)),
        (
            Method::DELETE,
            format!("/v1/responses/{}", o.response),
            None,
        ),
        get(format!("/v1/conversations/{}", o.conversation)),
        get(format!("/v1/vector_stores/{}", o.vector_store)),
        get(format!("/v1/fine_tuning/jobs/{}", o.job)),
        get(format!("/v1/chat/completions/{}", o.completion)),
        (
            Method::POST,
            "/v1/responses".into(),
            Some(json!({"model": "m", "input": "go on", "previous_response_id": o.response})),
        ),
        (
            Method::POST,
            "/v1/responses".into(),
            Some(json!({"model": "m", "input": "hi", "conversation": {"id": o.conversation}})),
        ),
        (
            Method::POST,
            "/v1/responses".into(),
            Some(
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": o.file}]}]}),
            ),
        ),
        (
            Method::POST,
            "/v1/responses".into(),
            Some(
                json!({"model": "m", "input": "find", "tools": [{"type": "file_search", "vector_store_ids": [o.vector_store]}]}),
            ),
        ),
        (
            Method::POST,
            "/v1/batches".into(),
            Some(json!({"input_file_id": o.file, "endpoint": "/v1/chat/completions"})),
        ),
        (
            Method::POST,
            "/v1/fine_tuning/jobs".into(),
            Some(json!({"model": "m", "training_file": o.file})),
        ),
        (
            Method::POST,
            "/v1/vector_stores".into(),
            Some(json!({"name": "mine", "file_ids": [o.file]})),
        ),
        // An escaped key is the same key upstream.
        (Method::POST, "/v1/chat/completions".into(), None),
    ]
}

async fn no_tenant_reaches_anothers_objects(backend: Backend) {
    let app = app(backend).await;
    let owned = acme_makes_one_of_each(&app).await;
    for (method, path, body) in reaches(&owned) {
        let seen = app.upstream.mock.seen().len();
        let (status, error) = match body {
            Some(body) => call(&app, OTHER_KEY, method.clone(), &path, Some(body)).await,
            None if path == "/v1/chat/completions" => {
                let text = format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"file","file":{{"file_\u0069d":"{}"}}}}]}}]}}"#,
                    owned.file
                );
                let response = app
                    .client
                    .post(app.url(&path))
                    .bearer_auth(OTHER_KEY)
                    .header("content-type", "application/json")
                    .body(text)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.json().await.unwrap())
            }
            None => call(&app, OTHER_KEY, method.clone(), &path, None).await,
        };
        assert_eq!(status, 404, "{method} {path}: {error}");
        assert_eq!(error["error"]["code"], "not_found", "{method} {path}");
        assert_eq!(
            app.upstream.mock.seen().len(),
            seen,
            "{method} {path} reached the upstream"
        );
    }
    // Acme itself reaches every one of them.
    for path in [
        format!("/v1/files/{}", owned.file),
        format!("/v1/files/{}/content", owned.batch_output),
        format!("/v1/batches/{}", owned.batch),
        format!("/v1/responses/{}", owned.response),
        format!("/v1/conversations/{}", owned.conversation),
        format!("/v1/vector_stores/{}", owned.vector_store),
        format!("/v1/fine_tuning/jobs/{}", owned.job),
        format!("/v1/chat/completions/{}", owned.completion),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let (status, answer) = call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "m", "input": "go on", "previous_response_id": owned.response})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // The owner's delete goes through and is recorded.
    let (status, deleted) = call(
        &app,
        MANAGED_KEY,
        Method::DELETE,
        &format!("/v1/files/{}", owned.file),
        None,
    )
    .await;
    assert_eq!((status, deleted["deleted"].clone()), (200, json!(true)));
    let rows = app
        .store
        .objects("openai", std::slice::from_ref(&owned.file))
        .await
        .unwrap();
    assert!(
        rows[0].deleted_at.is_some(),
        "the delete is in the registry"
    );
    assert_eq!(rows[0].tenant.0, "acme");
    // Still acme's: another tenant is refused it as before.
    let (status, _) = call(
        &app,
        OTHER_KEY,
        Method::GET,
        &format!("/v1/files/{}", owned.file),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

async fn lists_answer_only_the_callers_objects_page_by_page(backend: Backend) {
    let app = app(backend).await;
    // Interleaved on the one upstream account.
    let mut acme = Vec::new();
    for _ in 0..5 {
        acme.push(upload(&app, MANAGED_KEY, "batch").await);
        upload(&app, OTHER_KEY, "batch").await;
        upload(&app, OTHER_KEY, "batch").await;
    }
    // Newest first, two at a time, through the cursor.
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            Some(a) => format!("/v1/files?limit=2&after={a}"),
            None => "/v1/files?limit=2".to_owned(),
        };
        let (status, page) = call(&app, MANAGED_KEY, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 2);
        if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
            assert_eq!(&page["first_id"], first);
            assert_eq!(&page["last_id"], last);
        }
        got.extend(ids);
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    acme.reverse();
    assert_eq!(got, acme, "every one of acme's files, once, in order");
    // The other tenant's list holds none of acme's.
    let (_, page) = call(&app, OTHER_KEY, Method::GET, "/v1/files?limit=100", None).await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    assert!(acme.iter().all(|a| !ids.contains(&a.as_str())));
    // Batches and stored completions likewise.
    call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/batches",
        Some(json!({"input_file_id": acme[0], "endpoint": "/v1/chat/completions"})),
    )
    .await;
    let (_, batches) = call(&app, OTHER_KEY, Method::GET, "/v1/batches", None).await;
    assert_eq!(batches["data"], json!([]));
    assert_eq!(batches["has_more"], false);
}

async fn ids_made_outside_the_gateway_follow_the_credential(backend: Backend) {
    let app = app(backend).await;
    let outside = app
        .upstream
        .mock
        .objects
        .lock()
        .unwrap()
        .create("files", Default::default());
    let path = format!("/v1/files/{}", outside["id"].as_str().unwrap());
    // A shared credential: unknown to the registry, refused.
    let seen = app.upstream.mock.seen().len();
    let (status, _) = call(&app, MANAGED_KEY, Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(app.upstream.mock.seen().len(), seen);
    // The caller's own upstream key (pass-through): the provider isolates.
    let (status, file) = call(&app, PASSTHROUGH_KEY, Method::GET, &path, None).await;
    assert_eq!((status, file["id"].clone()), (200, outside["id"].clone()));
    // A tenant with its own upstream credential: forwarded with it, and
    // what it makes is still its own.
    let (status, _) = call(&app, SOLO_KEY, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let auth = app.upstream.mock.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth, format!("Bearer {TENANT_UPSTREAM_SECRET}"));
    let solos = upload(&app, SOLO_KEY, "batch").await;
    let (status, _) = call(
        &app,
        MANAGED_KEY,
        Method::GET,
        &format!("/v1/files/{solos}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "the registry applies to own credentials too");
}

async fn zero_retention_tenants_leave_nothing_stored_upstream(backend: Backend) {
    let app = app(backend).await;
    let response = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(ZDR_KEY)
        .json(&json!({"model": "m", "input": "forget me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-custodian-upstream-store"], "off");
    let sent: Value = serde_json::from_slice(&app.upstream.mock.last().body).unwrap();
    assert_eq!(
        sent["store"], false,
        "the upstream was told to keep nothing"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["output"][0]["content"][0]["text"], "echo: forget me");
    // Nothing kept: no object for anyone to reach, none registered.
    let id = answer["id"].as_str().unwrap().to_owned();
    assert!(app.store.objects("openai", &[id]).await.unwrap().is_empty());
    let (_, stored) = call(
        &app,
        ZDR_KEY,
        Method::POST,
        "/v1/chat/completions",
        Some(json!({"model": "m", "store": true, "messages": [{"role": "user", "content": "x"}]})),
    )
    .await;
    assert!(stored["id"].is_string());
    let sent: Value = serde_json::from_slice(&app.upstream.mock.last().body).unwrap();
    assert_eq!(sent["store"], false);
    for (body, reason) in [
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
    ] {
        let seen = app.upstream.mock.seen().len();
        let (status, error) = call(&app, ZDR_KEY, Method::POST, "/v1/responses", Some(body)).await;
        assert_eq!(status, 400, "{reason}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(reason),
            "{error}"
        );
        assert_eq!(app.upstream.mock.seen().len(), seen);
    }
}

/// A profile that lets objects holding payloads expire: once the content
/// retention has passed, the gateway deletes them upstream (audited) and
/// keeps fine-tune files, as it keeps other profiles' objects.
async fn expiring_objects_are_deleted_upstream_when_their_content_expires(backend: Backend) {
    let t0 = time::macros::datetime!(2026-06-01 12:00 UTC);
    let (clock, shared) = manual_clock(t0);
    let mut builder = builder();
    builder.profiles = "\n[profiles.api]\ntraining_cutover = \"2023-03-01T00:00:00Z\"\ncontent_retention = \"1d\"\nmetadata_retention = \"30d\"\nupstream_objects = \"expire\"\n".into();
    builder.extra = "[sweeper]\ninterval = \"100ms\"\n".into();
    let app = spawn_app_with(backend, builder, shared).await;
    let batch_file = upload(&app, MANAGED_KEY, "batch").await;
    let fine_tune = upload(&app, MANAGED_KEY, "fine-tune").await;
    let (_, response) = call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "m", "input": "x"})),
    )
    .await;
    let response = response["id"].as_str().unwrap().to_owned();
    let upstream_has = |collection: &str, id: &str| {
        let objects = app.upstream.mock.objects.lock().unwrap();
        objects.list(collection, "limit=1000")["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == id)
    };
    // Not yet: the content retention has not passed.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(upstream_has("files", &batch_file) && upstream_has("responses", &response));
    clock.set(t0 + time::Duration::days(1) + time::Duration::seconds(1));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while upstream_has("files", &batch_file) || upstream_has("responses", &response) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired objects still upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        upstream_has("files", &fine_tune),
        "fine-tune files stay until deleted"
    );
    let rows = app
        .store
        .objects("openai", &[batch_file.clone(), fine_tune.clone()])
        .await
        .unwrap();
    let deleted: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r.object_id.clone(), r.deleted_at.is_some()))
        .collect();
    assert!(
        deleted.contains(&(batch_file.clone(), true)) && deleted.contains(&(fine_tune, false)),
        "{deleted:?}"
    );
    let audits = app.store.audit_entries(0, 1000).await.unwrap();
    let purged: Vec<_> = audits
        .iter()
        .filter(|e| e.action == "upstream_object.purged")
        .collect();
    assert_eq!(purged.len(), 2, "each deletion audited");
    assert!(purged.iter().any(|e| e.details.contains(&batch_file)));
}

/// The same on an Anthropic route: message batches (and their results)
/// are their maker's; lists page with `after_id`.
async fn anthropic_message_batches_belong_to_their_maker(backend: Backend) {
    let app = app(backend).await;
    let send = |key: &'static str, method: Method, path: String, body: Option<Value>| {
        let mut request = app
            .client
            .request(method, app.url(&path))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01");
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let requests = json!({"requests": [{"custom_id": "1", "params": {"model": "claude", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]}}]});
    let mut mine = Vec::new();
    for _ in 0..3 {
        let (status, batch) = send(
            MANAGED_KEY,
            Method::POST,
            "/anthropic/v1/messages/batches".into(),
            Some(requests.clone()),
        )
        .await;
        assert_eq!(status, 200, "{batch}");
        mine.push(batch["id"].as_str().unwrap().to_owned());
        send(
            OTHER_KEY,
            Method::POST,
            "/anthropic/v1/messages/batches".into(),
            Some(requests.clone()),
        )
        .await;
    }
    for path in [
        format!("/anthropic/v1/messages/batches/{}", mine[0]),
        format!("/anthropic/v1/messages/batches/{}/results", mine[0]),
    ] {
        let seen = app.upstream.mock.seen().len();
        let (status, error) = send(OTHER_KEY, Method::GET, path.clone(), None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(error["type"], "error", "Anthropic's error shape");
        assert_eq!(app.upstream.mock.seen().len(), seen);
    }
    let (status, page) = send(
        MANAGED_KEY,
        Method::GET,
        "/anthropic/v1/messages/batches?limit=2".into(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let first: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [mine[2].as_str(), mine[1].as_str()]);
    assert_eq!(page["has_more"], true);
    let after = page["last_id"].as_str().unwrap();
    let (_, rest) = send(
        MANAGED_KEY,
        Method::GET,
        format!("/anthropic/v1/messages/batches?limit=2&after_id={after}"),
        None,
    )
    .await;
    let rest: Vec<&str> = rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [mine[0].as_str()]);
}

/// What the gateway cannot check is refused on a shared credential: an
/// endpoint it does not model, an escaped path, a body only a lenient
/// parser reads, a reference to a stored item; a fine-tuned model is its
/// maker's; deleting a part of an object does not delete the object.
async fn what_cannot_be_checked_is_refused_on_a_shared_credential(backend: Backend) {
    let mut builder = builder();
    builder.routes = Some(
        "[[routes]]\nname = \"openai\"\nprefix = \"/v1/\"\nupstream = \"UPSTREAM_BASEv1/\"\nprofile = \"api\"\nupstream_key = { env = \"TEST_UPSTREAM_KEY\" }\n".into(),
    );
    let app = spawn_app_with(backend, builder, Arc::new(SystemClock)).await;
    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::GET, "/v1/assistants", None, 404),
        (
            Method::POST,
            "/v1/threads/runs",
            Some(json!({"assistant_id": "asst_1"})),
            404,
        ),
        (Method::GET, "/v1/containers/cntr_1/files", None, 404),
        (Method::GET, "/v1/%66iles", None, 400),
        (
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})),
            404,
        ),
    ];
    for (method, path, body, want) in cases {
        let seen = app.upstream.mock.seen().len();
        let (status, error) = call(&app, MANAGED_KEY, method.clone(), path, body).await;
        assert_eq!(status, want, "{method} {path}: {error}");
        assert_eq!(
            app.upstream.mock.seen().len(),
            seen,
            "{method} {path} reached the upstream"
        );
    }
    // The caller's own key: the provider keeps accounts apart.
    let (status, _) = call(&app, PASSTHROUGH_KEY, Method::GET, "/v1/echo", None).await;
    assert_eq!(status, 200);
    // Bodies a lenient upstream parser may read, the gateway cannot.
    for body in [
        b"\xEF\xBB\xBF{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}"
            .to_vec(),
        br#"{"model":"m","input":"x","temperature":NaN,"previous_response_id":"resp_1"}"#.to_vec(),
        format!(
            "{}\"previous_response_id\":\"resp_1\"{}",
            "{\"a\":".repeat(200),
            "}".repeat(200)
        )
        .into_bytes(),
    ] {
        let seen = app.upstream.mock.seen().len();
        let response = app
            .client
            .post(app.url("/v1/responses"))
            .bearer_auth(MANAGED_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(app.upstream.mock.seen().len(), seen);
    }
    // Collection names in any case are the same collection.
    let file = upload(&app, MANAGED_KEY, "batch").await;
    let (status, _) = call(
        &app,
        OTHER_KEY,
        Method::GET,
        &format!("/v1/FILES/{file}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A fine-tuned model is its maker's, for chat as for reading it.
    let (_, job) = call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/fine_tuning/jobs",
        Some(json!({"model": "gpt-x", "training_file": file})),
    )
    .await;
    let model = job["fine_tuned_model"].as_str().unwrap().to_owned();
    let chat = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = call(
        &app,
        OTHER_KEY,
        Method::POST,
        "/v1/chat/completions",
        Some(chat.clone()),
    )
    .await;
    assert_eq!(status, 404, "another tenant's fine-tuned model");
    let (status, _) = call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/chat/completions",
        Some(chat),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        OTHER_KEY,
        Method::DELETE,
        &format!("/v1/models/{model}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // Deleting a conversation's item leaves the conversation (and its row).
    let (_, conversation) = call(
        &app,
        MANAGED_KEY,
        Method::POST,
        "/v1/conversations",
        Some(json!({})),
    )
    .await;
    let conversation = conversation["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &app,
        MANAGED_KEY,
        Method::DELETE,
        &format!("/v1/conversations/{conversation}/items/msg_1"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rows = app
        .store
        .objects("openai", std::slice::from_ref(&conversation))
        .await
        .unwrap();
    assert!(
        rows[0].deleted_at.is_none(),
        "an item's delete is not the conversation's"
    );
}

both_stores!(
    what_cannot_be_checked_is_refused_on_a_shared_credential,
    anthropic_message_batches_belong_to_their_maker,
    expiring_objects_are_deleted_upstream_when_their_content_expires,
    no_tenant_reaches_anothers_objects,
    lists_answer_only_the_callers_objects_page_by_page,
    ids_made_outside_the_gateway_follow_the_credential,
    zero_retention_tenants_leave_nothing_stored_upstream,
);
