//! Copies of fine-tune files (docs/design.md, Retention): an upload through the
//! gateway (`POST …/files`, multipart) is copied, while it streams to the
//! upstream, into a blob store (`object_store`: a local directory, or
//! S3-compatible storage). The copy is kept, outside the retention clock,
//! only when the upstream accepted the file with purpose `fine-tune`; it is
//! linked to the upstream's file id and removed, audited, when the tenant
//! deletes the file through the gateway and the upstream confirms. A ZDR
//! tenant's files are never copied.
//!
//! Memory stays bounded: the body reaches the copier through a small
//! channel (a slow blob store slows the upload rather than buffering it),
//! and the blob writer uploads in parts.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::FilesConfig;
use crate::crypto::{ContentKeys, FileSealer, Opened};
use crate::domain::audit::AuditEvent;
use crate::domain::objects::FileCopy;
use crate::domain::{RecordId, TenantId};
use crate::store::Store;

/// Chunks in flight between the upload and the copier.
const CHANNEL_CHUNKS: usize = 16;
/// The multipart `purpose` field is a short word.
const MAX_PURPOSE_BYTES: usize = 64;
/// How long an upload's response may wait for its copy to be written.
const COPY_FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Copies kept for training use.
pub const FINE_TUNE: &str = "fine-tune";

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("files.location {0:?}: {1}")]
    Location(String, String),
    #[error("blob store: {0}")]
    Object(#[from] object_store::Error),
    #[error("multipart body: {0}")]
    Multipart(#[from] multer::Error),
    #[error("blob write: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the upload ended before its file was complete")]
    Incomplete,
    #[error("the copy cannot be read: {0}")]
    Unreadable(&'static str),
    #[error("file key: {0}")]
    Key(#[from] crate::crypto::CryptoError),
}

/// The blob store for file copies, and the rows that index them.
#[derive(Clone)]
pub struct FileCopies {
    /// Seals copies, one key per file, when encryption is on.
    keys: Option<Arc<ContentKeys>>,
    objects: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The directory itself, when the blob store is a local one: its
    /// writers' staging files are invisible through `ObjectStore::list`.
    local_dir: Option<std::path::PathBuf>,
    store: Arc<dyn Store>,
}

/// What one pass over upload leftovers removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    pub blobs: usize,
    pub keys: usize,
}

impl FileCopies {
    pub fn open(config: &FilesConfig, store: Arc<dyn Store>) -> Result<Self, FilesError> {
        let location = config.location.as_str();
        let bad =
            |e: &dyn std::fmt::Display| FilesError::Location(location.to_owned(), e.to_string());
        let (url, local_dir) = if location.contains("://") {
            (url::Url::parse(location).map_err(|e| bad(&e))?, None)
        } else {
            // A local directory, relative to the working directory.
            std::fs::create_dir_all(location).map_err(|e| bad(&e))?;
            let absolute = std::fs::canonicalize(location).map_err(|e| bad(&e))?;
            let url = url::Url::from_directory_path(&absolute)
                .map_err(|()| bad(&"not a directory path"))?;
            (url, Some(absolute))
        };
        // Credentials and endpoints for S3 come from the usual AWS_* variables.
        let options = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v));
        let (objects, prefix) = object_store::parse_url_opts(&url, options).map_err(|e| bad(&e))?;
        Ok(Self {
            keys: None,
            objects: Arc::from(objects),
            prefix,
            local_dir,
            store,
        })
    }

    /// Seal every copy under a key of its own (destroyed with the copy).
    pub fn with_keys(mut self, keys: Option<Arc<ContentKeys>>) -> Self {
        self.keys = keys;
        self
    }

    fn path(&self, parts: &[&str]) -> ObjectPath {
        // Each part is encoded on its own: a `/` or `..` in an id cannot
        // escape its place.
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.child(*part))
    }

    /// Start copying a multipart upload whose body will be sent to the
    /// returned copy's `sender`. `None` when the body is not multipart.
    pub fn begin(
        &self,
        record: RecordId,
        tenant: &TenantId,
        content_type: Option<&str>,
    ) -> Option<PendingCopy> {
        let boundary = multer::parse_boundary(content_type?).ok()?;
        let sealing = self
            .keys
            .as_ref()
            .map(|keys| (Arc::clone(keys), record, tenant.clone()));
        let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let pending = self.path(&["pending", &record.to_string()]);
        let task = tokio::spawn(copy_upload(
            Arc::clone(&self.objects),
            pending.clone(),
            receiver,
            boundary,
            sealing,
        ));
        Some(PendingCopy {
            sender: Some(sender),
            task: Some(task),
            pending,
            record,
            keys: self.keys.clone(),
            objects: Arc::clone(&self.objects),
            settled: false,
        })
    }

    /// After the upstream answered an upload: keep the copy of a fine-tune
    /// file it accepted, discard anything else.
    pub async fn complete(
        &self,
        copy: PendingCopy,
        tenant: &TenantId,
        record: RecordId,
        upstream_status: u16,
        upstream_body: &[u8],
        now: OffsetDateTime,
    ) {
        let mut copy = copy;
        drop(copy.sender.take());
        // The body has been sent by now; the copier only has to finish
        // writing. A copier that cannot is stopped rather than waited on.
        let Some(mut task) = copy.task.take() else {
            return;
        };
        let uploaded = match tokio::time::timeout(COPY_FINISH_TIMEOUT, &mut task).await {
            Ok(Ok(Ok(u))) => Some(u),
            Ok(Ok(Err(e))) => {
                copy_failed(tenant, &e);
                None
            }
            Ok(Err(e)) => {
                copy_failed(tenant, &e);
                None
            }
            Err(elapsed) => {
                task.abort();
                copy_failed(tenant, &elapsed);
                None
            }
        };
        // From here on this function removes or keeps the blob itself.
        copy.settled = true;
        let pending = copy.pending.clone();
        let accepted = accepted_file(upstream_status, upstream_body);
        let keep = match (&uploaded, accepted) {
            (Some(u), Some((file_id, purpose)))
                if purpose.as_deref().or(u.purpose.as_deref()) == Some(FINE_TUNE) =>
            {
                Some((u, file_id))
            }
            _ => None,
        };
        let Some((uploaded, file_id)) = keep else {
            let _ = self.objects.delete(&pending).await;
            copy.forget_key();
            return;
        };
        let key = self.path(&["files", &tenant.0, &file_id]);
        let result = async {
            self.objects.rename(&pending, &key).await?;
            self.store
                .insert_file_copy(&FileCopy {
                    tenant: tenant.clone(),
                    file_id: file_id.clone(),
                    object_key: key.to_string(),
                    filename: uploaded.filename.clone(),
                    purpose: FINE_TUNE.to_owned(),
                    bytes: uploaded.bytes,
                    sha256: uploaded.sha256.clone(),
                    record_id: record,
                    created_at: now,
                    sealed: Some(self.keys.is_some()),
                })
                .await?;
            Ok::<(), FilesError>(())
        }
        .await;
        match result {
            Ok(()) => {
                metrics::counter!("custodian_file_copies_kept_total").increment(1);
                tracing::info!(tenant = %tenant, file_id, bytes = uploaded.bytes, "fine-tune file copy kept");
            }
            Err(e) => {
                let _ = self.objects.delete(&pending).await;
                copy.forget_key();
                copy_failed(tenant, &e);
            }
        }
    }

    /// After the upstream answered a delete: when it confirmed, remove our
    /// copy and audit the removal. Returns whether a copy was removed.
    pub async fn deleted_upstream(
        &self,
        tenant: &TenantId,
        file_id: &str,
        upstream_status: u16,
        upstream_body: &[u8],
        audit: AuditEvent,
    ) -> Result<bool, FilesError> {
        if !confirms_deletion(upstream_status, upstream_body) {
            return Ok(false);
        }
        let Some(copy) = self.store.file_copy(tenant, file_id).await? else {
            return Ok(false);
        };
        self.delete_blob(&copy.object_key).await?;
        let removed = self.store.delete_file_copy(tenant, file_id, &audit).await?;
        self.shred(copy.record_id).await?;
        if removed {
            tracing::info!(tenant = %tenant, file_id, "fine-tune file copy removed");
        }
        Ok(removed)
    }

    /// Remove the blob and key of a copy an erasure took out of the store.
    pub async fn remove_erased(&self, file: &crate::store::ErasedFile) -> Result<(), FilesError> {
        // The key first: once it is gone, a blob left behind is noise.
        self.shred(file.record_id).await?;
        self.delete_blob(&file.object_key).await
    }

    async fn delete_blob(&self, object_key: &str) -> Result<(), FilesError> {
        let key = ObjectPath::parse(object_key).map_err(object_store::Error::from)?;
        match self.objects.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Crypto-shredding: any other copy of the blob is now noise.
    async fn shred(&self, record: RecordId) -> Result<(), FilesError> {
        if let Some(keys) = &self.keys {
            keys.destroy_file_key(record).await?;
        }
        Ok(())
    }

    /// Remove what uploads left behind when they could not clean up after
    /// themselves (the process was killed mid-upload): blobs under
    /// `pending/` and file keys that no kept copy uses, of uploads that
    /// started more than `max_age` before `now` (an upload's record id is a
    /// UUIDv7: its start). Younger ones may still be in flight, here or on
    /// another replica.
    pub async fn remove_leftovers(
        &self,
        now: OffsetDateTime,
        max_age: std::time::Duration,
    ) -> Result<Leftovers, FilesError> {
        // An age too large to subtract: nothing is that old.
        let Some(before) = time::Duration::try_from(max_age)
            .ok()
            .and_then(|age| now.checked_sub(age))
        else {
            return Ok(Leftovers::default());
        };
        let started_before = |name: &str| {
            name.split('#')
                .next()
                .and_then(|id| id.parse::<uuid::Uuid>().ok())
                .and_then(|id| upload_started(RecordId(id)))
                .is_some_and(|at| at < before)
        };
        let mut removed = Leftovers::default();
        match &self.local_dir {
            // Staging files (`<id>#<n>`) of an interrupted write included.
            Some(dir) => {
                let pending = dir.join("pending");
                for entry in std::fs::read_dir(&pending).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if started_before(&name) && tokio::fs::remove_file(entry.path()).await.is_ok() {
                        removed.blobs += 1;
                    }
                }
            }
            None => {
                let pending = self.path(&["pending"]);
                let mut listing = self.objects.list(Some(&pending));
                while let Some(meta) = listing.next().await {
                    let meta = meta?;
                    if meta.location.filename().is_some_and(started_before) {
                        self.objects.delete(&meta.location).await?;
                        removed.blobs += 1;
                    }
                }
            }
        }
        if let Some(keys) = &self.keys {
            let in_use: std::collections::HashSet<RecordId> =
                self.store.file_copy_records().await?.into_iter().collect();
            for record in keys.file_key_records().await? {
                let old = upload_started(record).is_some_and(|at| at < before);
                if old && !in_use.contains(&record) {
                    keys.destroy_file_key(record).await?;
                    removed.keys += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The bytes of a kept copy (for operators and tests), decrypted.
    pub async fn read(&self, copy: &FileCopy) -> Result<Bytes, FilesError> {
        let key = ObjectPath::parse(&copy.object_key).map_err(object_store::Error::from)?;
        let object = self.objects.get(&key).await?;
        let stored = object.bytes().await?;
        let sealed = copy
            .sealed
            .unwrap_or_else(|| crate::crypto::file_sealed_before_the_flag(&stored));
        let keys = match (sealed, &self.keys) {
            (false, _) => return Ok(stored),
            (true, Some(keys)) => keys,
            (true, None) => {
                return Err(FilesError::Unreadable("it is sealed and encryption is off"))
            }
        };
        match keys
            .open_file(copy.record_id, &copy.tenant, &stored)
            .await?
        {
            Opened::Plain(bytes) | Opened::Decrypted(bytes) => Ok(Bytes::from(bytes)),
            Opened::Expired | Opened::Erased => {
                Err(FilesError::Unreadable("its key has been destroyed"))
            }
            Opened::Unreadable => Err(FilesError::Unreadable("it does not decrypt")),
        }
    }
}

/// When the upload of record `record` started: its id is a UUIDv7.
fn upload_started(record: RecordId) -> Option<OffsetDateTime> {
    let (secs, nanos) = record.0.get_timestamp()?.to_unix();
    let at = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    Some(at + time::Duration::nanoseconds(i64::from(nanos)))
}

fn copy_failed(tenant: &TenantId, e: &dyn std::fmt::Display) {
    metrics::counter!("custodian_file_copies_failed_total").increment(1);
    tracing::error!(tenant = %tenant, error = %e, "fine-tune file copy failed");
}

/// An upload being copied. Dropped without `complete` (the upstream failed,
/// the client left), it stops the copier and removes what it wrote.
pub struct PendingCopy {
    sender: Option<mpsc::Sender<Bytes>>,
    /// The copier; taken by `complete` (or by `drop`, which lets it finish).
    task: Option<JoinHandle<Result<Uploaded, FilesError>>>,
    pending: ObjectPath,
    record: RecordId,
    keys: Option<Arc<ContentKeys>>,
    objects: Arc<dyn ObjectStore>,
    settled: bool,
}

impl Drop for PendingCopy {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.forget_key();
        // Without its sender the copier sees the body end early and aborts
        // its own write (an S3 multipart upload included); only one that
        // hangs is stopped. Then whatever it wrote goes.
        drop(self.sender.take());
        let (objects, pending) = (Arc::clone(&self.objects), self.pending.clone());
        let task = self.task.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(task) = task {
                    let abort = task.abort_handle();
                    if tokio::time::timeout(COPY_FINISH_TIMEOUT, task)
                        .await
                        .is_err()
                    {
                        abort.abort();
                    }
                }
                let _ = objects.delete(&pending).await;
            });
        }
    }
}

impl PendingCopy {
    /// A copy not kept takes its key with it.
    fn forget_key(&self) {
        let (Some(keys), Ok(runtime)) = (&self.keys, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (keys, record) = (Arc::clone(keys), self.record);
        runtime.spawn(async move {
            if let Err(e) = keys.destroy_file_key(record).await {
                tracing::error!(error = %e, "removing an unused file key failed");
            }
        });
    }

    /// Where the body goes; the copy ends when the sender is dropped.
    pub fn take_sender(&mut self) -> Option<mpsc::Sender<Bytes>> {
        self.sender.take()
    }
}

/// What the copier wrote.
#[derive(Debug)]
struct Uploaded {
    purpose: Option<String>,
    filename: Option<String>,
    bytes: i64,
    sha256: String,
}

/// Read the multipart body from `receiver`; write its `file` part to
/// `pending` and note its `purpose`.
async fn copy_upload(
    objects: Arc<dyn ObjectStore>,
    pending: ObjectPath,
    receiver: mpsc::Receiver<Bytes>,
    boundary: String,
    sealing: Option<(Arc<ContentKeys>, RecordId, TenantId)>,
) -> Result<Uploaded, FilesError> {
    let body = tokio_stream_from(receiver).map(Ok::<Bytes, std::io::Error>);
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut purpose = None;
    let mut written = None;
    while let Some(mut field) = multipart.next_field().await? {
        match field.name() {
            Some("purpose") => {
                let mut value = Vec::new();
                while let Some(chunk) = field.chunk().await? {
                    if value.len() + chunk.len() > MAX_PURPOSE_BYTES {
                        break;
                    }
                    value.extend_from_slice(&chunk);
                }
                purpose = Some(String::from_utf8_lossy(&value).trim().to_owned());
            }
            Some("file") if written.is_none() => {
                let filename = field.file_name().map(str::to_owned);
                let mut writer = BufWriter::new(Arc::clone(&objects), pending.clone());
                let mut hasher = Sha256::new();
                let mut bytes = 0i64;
                let copied = async {
                    // The file's key is stored before any of the file is;
                    // without it, no copy rather than a copy in clear.
                    let mut sealer: Option<(FileSealer, Vec<u8>)> = match &sealing {
                        Some((keys, record, tenant)) => {
                            Some(keys.file_sealer(*record, tenant).await?)
                        }
                        None => None,
                    };
                    if let Some((_, header)) = &sealer {
                        writer.write_all(header).await?;
                    }
                    while let Some(chunk) = field.chunk().await? {
                        hasher.update(&chunk);
                        bytes += chunk.len() as i64;
                        match sealer.as_mut() {
                            Some((s, _)) => writer.write_all(&s.update(&chunk)?).await?,
                            None => writer.write_all(&chunk).await?,
                        }
                    }
                    if let Some((s, _)) = sealer.take() {
                        writer.write_all(&s.finish()?).await?;
                    }
                    writer.shutdown().await?;
                    Ok::<(), FilesError>(())
                }
                .await;
                if let Err(e) = copied {
                    // No half-written object (or multipart upload) stays behind.
                    let _ = writer.abort().await;
                    return Err(e);
                }
                written = Some((filename, bytes, hex::encode(hasher.finalize())));
            }
            _ => while field.chunk().await?.is_some() {},
        }
    }
    let Some((filename, bytes, sha256)) = written else {
        return Err(FilesError::Incomplete);
    };
    Ok(Uploaded {
        purpose,
        filename,
        bytes,
        sha256,
    })
}

fn tokio_stream_from(
    mut receiver: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> + Send {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The file id (and purpose) of an upload the upstream accepted.
fn accepted_file(status: u16, body: &[u8]) -> Option<(String, Option<String>)> {
    if !(200..300).contains(&status) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value.get("id")?.as_str()?.to_owned();
    if id.is_empty() || id.len() > 256 {
        return None;
    }
    let purpose = value
        .get("purpose")
        .and_then(|p| p.as_str())
        .map(str::to_owned);
    Some((id, purpose))
}

/// The upstream confirmed the deletion of a file (a 2xx with
/// `{"object": "file", "deleted": true}`).
fn confirms_deletion(status: u16, body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    (200..300).contains(&status)
        && v.get("object").and_then(serde_json::Value::as_str) == Some("file")
        && v.get("deleted").and_then(serde_json::Value::as_bool) == Some(true)
}

/// `…/v1/files` (an upload) or `…/v1/files/{id}` (a file), from the request
/// path. Files nested elsewhere (`/v1/vector_stores/{id}/files/{id}`) are
/// other resources.
pub fn file_target(path: &str) -> Option<FileTarget<'_>> {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next()?;
    if last == "files" {
        return (segments.next()? == "v1").then_some(FileTarget::Collection);
    }
    if segments.next()? != "files" || last.is_empty() {
        return None;
    }
    (segments.next()? == "v1").then_some(FileTarget::File(last))
}

#[derive(Debug, PartialEq, Eq)]
pub enum FileTarget<'a> {
    Collection,
    File(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_the_path() {
        assert_eq!(file_target("/v1/files"), Some(FileTarget::Collection));
        assert_eq!(file_target("/v1/files/"), Some(FileTarget::Collection));
        assert_eq!(
            file_target("/v1/files/file-abc"),
            Some(FileTarget::File("file-abc"))
        );
        assert_eq!(file_target("/v1/files/file-abc/content"), None);
        assert_eq!(file_target("/v1/chat/completions"), None);
        assert_eq!(file_target("/v1/vector_stores/vs_1/files/file-abc"), None);
        assert_eq!(file_target("/v1/vector_stores/vs_1/files"), None);
        assert_eq!(
            file_target("/openai/v1/files/file-abc"),
            Some(FileTarget::File("file-abc"))
        );
    }

    #[test]
    fn only_confirmed_acceptance_and_deletion_count() {
        assert_eq!(
            accepted_file(200, br#"{"id":"file-1","purpose":"fine-tune"}"#),
            Some(("file-1".into(), Some("fine-tune".into())))
        );
        assert_eq!(accepted_file(400, br#"{"id":"file-1"}"#), None);
        assert_eq!(accepted_file(200, b"<html>"), None);
        assert!(confirms_deletion(
            200,
            br#"{"id":"file-1","object":"file","deleted":true}"#
        ));
        assert!(!confirms_deletion(
            200,
            br#"{"id":"file-1","object":"file","deleted":false}"#
        ));
        assert!(!confirms_deletion(
            200,
            br#"{"id":"file-1","object":"vector_store.file.deleted","deleted":true}"#
        ));
        assert!(!confirms_deletion(404, br#"{"deleted":true}"#));
    }
}
