//! Fine-tune files: an accepted upload's copy is kept in the blob store,
//! whatever the order of the multipart fields, outside the retention clock;
//! other purposes, ZDR tenants and refused uploads leave no copy; a delete
//! the upstream confirms removes the copy and is audited.

use custodian::domain::TenantId;
use custodian::objects::copies::FileCopies;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::helpers::*;

pub(crate) fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"{\"messages\": []}\n"[i % 17]).collect()
}

pub(crate) fn form(purpose: &str, file: Vec<u8>, file_first: bool) -> Form {
    let part = Part::bytes(file).file_name("train.jsonl");
    if file_first {
        Form::new()
            .part("file", part)
            .text("purpose", purpose.to_owned())
    } else {
        Form::new()
            .text("purpose", purpose.to_owned())
            .part("file", part)
    }
}

pub(crate) async fn upload(app: &TestApp, key: &str, form: Form) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

fn files(app: &TestApp) -> FileCopies {
    FileCopies::open(&app.config.files, app.store.clone()).unwrap()
}

/// Every file under the blob store's directory.
pub(crate) fn stored_objects(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(app.files_dir.path(), &mut out);
    out
}

async fn accepted_fine_tune_files_are_copied_and_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = TenantId("acme".into());
    for file_first in [false, true] {
        let data = payload(60_000);
        let (status, file) = upload(
            &app,
            MANAGED_KEY,
            form("fine-tune", data.clone(), file_first),
        )
        .await;
        assert_eq!(status, 200, "{file}");
        let id = file["id"].as_str().unwrap();
        let copy = app
            .store
            .file_copy(&acme, id)
            .await
            .unwrap()
            .expect("a copy");
        assert_eq!(copy.bytes, data.len() as i64);
        assert_eq!(copy.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(copy.filename.as_deref(), Some("train.jsonl"));
        assert_eq!(copy.sealed, Some(false), "kept in clear, and said so");
        assert_eq!(
            files(&app).read(&copy).await.unwrap().as_ref(),
            data.as_slice()
        );
    }
    // Small files (read whole, not streamed) are copied too.
    let (_, small) = upload(&app, MANAGED_KEY, form("fine-tune", payload(100), false)).await;
    let small_id = small["id"].as_str().unwrap();
    assert!(app
        .store
        .file_copy(&acme, small_id)
        .await
        .unwrap()
        .is_some());

    // No retention clock: years later a sweep leaves them.
    let later = OffsetDateTime::now_utc() + Duration::days(3_000);
    sweep_at(app.store.as_ref(), later).await;
    assert!(app
        .store
        .file_copy(&acme, small_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(stored_objects(&app).len(), 3, "{:?}", stored_objects(&app));
}

async fn only_fine_tune_files_of_non_zdr_tenants_are_copied(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, other) =
        upload(&app, MANAGED_KEY, form("assistants", payload(5_000), false)).await;
    assert_eq!(status, 200);
    assert!(app
        .store
        .file_copy(&TenantId("acme".into()), other["id"].as_str().unwrap())
        .await
        .unwrap()
        .is_none());
    let (status, zdr) = upload(&app, ZDR_KEY, form("fine-tune", payload(5_000), false)).await;
    assert_eq!(status, 200);
    assert!(app
        .store
        .file_copy(&TenantId("zdr-co".into()), zdr["id"].as_str().unwrap())
        .await
        .unwrap()
        .is_none());
    // An upload the upstream refuses leaves nothing either.
    let response = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(MANAGED_KEY)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--xyz--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the mock accepts it");
    let body: Value = response.json().await.unwrap();
    assert!(
        app.store
            .file_copy(&TenantId("acme".into()), body["id"].as_str().unwrap())
            .await
            .unwrap()
            .is_none(),
        "no file part: nothing to keep"
    );
    assert_eq!(stored_objects(&app), Vec::<std::path::PathBuf>::new());
}

async fn a_confirmed_delete_removes_the_copy_and_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = TenantId("acme".into());
    let (_, file) = upload(&app, MANAGED_KEY, form("fine-tune", payload(20_000), false)).await;
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(stored_objects(&app).len(), 1);

    // Another tenant deleting that id removes nothing of acme's: it is
    // answered as for a file that does not exist, and never forwarded.
    let seen = app.upstream.mock.seen().len();
    let response = delete(&app, PASSTHROUGH_KEY, &id).await;
    assert_eq!(response.status(), 404);
    assert_eq!(app.upstream.mock.seen().len(), seen);
    assert!(app.store.file_copy(&acme, &id).await.unwrap().is_some());

    let response = delete(&app, MANAGED_KEY, &id).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["deleted"], true, "the upstream's answer is relayed");
    assert!(app.store.file_copy(&acme, &id).await.unwrap().is_none());
    assert_eq!(stored_objects(&app), Vec::<std::path::PathBuf>::new());
    let entry = app.store.audit_entries(0, 10).await.unwrap().pop().unwrap();
    assert_eq!(entry.action, "file.deleted");
    assert_eq!(entry.subject, Some(format!("file:{id}")));
    assert!(entry.actor.starts_with("key:mk_"));
}

/// With encryption on, a copy is sealed under a key of its own: the blob
/// holds no plaintext, reads decrypt, and deleting the file destroys its
/// key, so a copy of the blob taken before (a backup) no longer opens.
async fn encrypted_copies_are_shredded_with_their_file(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let builder = ConfigBuilder {
        extra: format!(
            "[encryption]\nenabled = true\nkey_dir = \"{}\"\nkek = {{ env = \"TEST_KEK\" }}\n",
            key_dir.path().display()
        ),
        ..Default::default()
    };
    let app = spawn_app_with(
        backend,
        builder,
        std::sync::Arc::new(custodian::domain::clock::SystemClock),
    )
    .await;
    let acme = TenantId("acme".into());
    let keys = test_keys(key_dir.path()).await;
    let files = files(&app).with_keys(Some(std::sync::Arc::clone(&keys)));
    let marker = format!("file-secret-{}", uuid::Uuid::now_v7().simple());
    for size in [100, 60_000] {
        let mut data = payload(size);
        data.extend_from_slice(marker.as_bytes());
        let (status, file) = upload(&app, MANAGED_KEY, form("fine-tune", data.clone(), true)).await;
        assert_eq!(status, 200, "{file}");
        let id = file["id"].as_str().unwrap().to_owned();
        let copy = app
            .store
            .file_copy(&acme, &id)
            .await
            .unwrap()
            .expect("a copy");
        assert_eq!(copy.sealed, Some(true));
        let blob = std::fs::read(stored_objects(&app).pop().unwrap()).unwrap();
        assert!(!blob.windows(marker.len()).any(|w| w == marker.as_bytes()));
        assert_eq!(files.read(&copy).await.unwrap().as_ref(), data.as_slice());
        assert_eq!(copy.sha256, hex::encode(Sha256::digest(&data)));

        let backup = app.files_dir.path().join("backup.blob");
        std::fs::write(&backup, &blob).unwrap();
        let response = delete(&app, MANAGED_KEY, &id).await;
        assert_eq!(response.status(), 200);
        let opened = keys
            .open_file(copy.record_id, &acme, &std::fs::read(&backup).unwrap())
            .await
            .unwrap();
        assert_eq!(opened, custodian::crypto::Opened::Expired);
        std::fs::remove_file(&backup).unwrap();
    }
    // Uploads that are not kept leave no key behind.
    upload(&app, MANAGED_KEY, form("assistants", payload(100), true)).await;
    let file_keys = || -> Vec<_> {
        std::fs::read_dir(key_dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("file-"))
            .collect()
    };
    // The unused key is removed in the background: wait for it (bounded).
    for _ in 0..100 {
        if file_keys().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(file_keys().is_empty(), "{:?}", file_keys());
}

both_stores!(
    encrypted_copies_are_shredded_with_their_file,
    accepted_fine_tune_files_are_copied_and_kept,
    only_fine_tune_files_of_non_zdr_tenants_are_copied,
    a_confirmed_delete_removes_the_copy_and_is_audited,
);
