//! The disk spool: where records go while the store is slow or down, and
//! (in journal mode) where every record goes before its response ends.
//!
//! Segments are append-only files of checksummed frames (`segment`), one
//! CBOR-encoded [`Record`] per frame, written in batches with one fsync per
//! batch. Replay moves them into the store oldest segment first; record ids
//! make the inserts idempotent, so a replay cut short is simply done again.
//! A segment is removed only once every record in it is in the store.

pub mod journal;
pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::SpoolConfig;
use crate::domain::records::Record;
use crate::store::{Store, StoreError};

const SEGMENT_SUFFIX: &str = "spool";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("spool {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("encoding a record for the spool: {0}")]
    Encode(String),
    #[error("the spool's writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SpoolError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Full { .. } => "spool_full",
            _ => "spool_failed",
        }
    }
}

/// Why a replay pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    /// False after an append failed (full, or a disk error); true again
    /// after one succeeds or a replay frees space.
    writable: AtomicBool,
}

struct State {
    next_seq: u64,
    open: Option<OpenSegment>,
    /// Bytes of every segment on disk, the open one included.
    used: u64,
}

struct OpenSegment {
    seq: u64,
    file: File,
    bytes: u64,
}

/// What one replay pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub segments: u64,
    pub records: u64,
    /// Frames that could not be read back (torn or corrupt tails, records
    /// in an unknown shape); counted and logged.
    pub unreadable: u64,
}

impl Spool {
    /// Open (creating) the spool directory. Segments left by an earlier
    /// process are kept for replay; appends start a new segment.
    pub fn open(config: &SpoolConfig) -> Result<Self, SpoolError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| SpoolError::Io(dir.clone(), e))?;
        let existing = list_segments(&dir)?;
        let used = existing.iter().map(|(_, _, bytes)| bytes).sum();
        let next_seq = existing.last().map_or(1, |(seq, _, _)| seq + 1);
        let spool = Self {
            dir,
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes,
            state: Mutex::new(State {
                next_seq,
                open: None,
                used,
            }),
            writable: AtomicBool::new(true),
        };
        spool.publish_gauges(used, existing.len());
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while the spool can take records: not full, and its last
    /// append did not fail since space was last freed.
    pub fn can_accept(&self) -> bool {
        self.writable.load(Ordering::Relaxed) && self.lock().used < self.max_bytes
    }

    /// True when records are waiting for replay.
    pub fn is_empty(&self) -> bool {
        self.lock().used == 0
    }

    /// Append `records` durably (one fsync for the batch). Either all of
    /// them are in the spool when this returns `Ok`, or none is counted as
    /// kept.
    pub async fn append(self: &Arc<Self>, records: &[Record]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes = encode_records(records)?;
        let spool = Arc::clone(self);
        let count = records.len() as u64;
        let result = tokio::task::spawn_blocking(move || spool.append_blocking(&bytes)).await?;
        self.writable.store(result.is_ok(), Ordering::Relaxed);
        if result.is_ok() {
            metrics::counter!("custodian_spool_records_total", "event" => "spooled")
                .increment(count);
        }
        result
    }

    fn append_blocking(&self, frames: &[u8]) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let needed = frames.len() as u64 + segment::MAGIC.len() as u64;
        if state.used + needed > self.max_bytes {
            return Err(SpoolError::Full {
                used: state.used,
                max: self.max_bytes,
            });
        }
        if state
            .open
            .as_ref()
            .is_some_and(|open| open.bytes >= self.segment_bytes)
        {
            state.open = None;
        }
        if state.open.is_none() {
            let seq = state.next_seq;
            let path = self.segment_path(seq);
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| SpoolError::Io(path.clone(), e))?;
            file.write_all(segment::MAGIC)
                .map_err(|e| SpoolError::Io(path.clone(), e))?;
            sync_dir(&self.dir)?;
            state.next_seq += 1;
            state.used += segment::MAGIC.len() as u64;
            state.open = Some(OpenSegment {
                seq,
                file,
                bytes: segment::MAGIC.len() as u64,
            });
        }
        let Some(open) = state.open.as_mut() else {
            return Ok(());
        };
        let path = self.segment_path(open.seq);
        let written = open
            .file
            .write_all(frames)
            .and_then(|()| open.file.sync_data());
        if let Err(e) = written {
            // The file may now end in a torn frame: never append after it.
            state.open = None;
            return Err(SpoolError::Io(path, e));
        }
        open.bytes += frames.len() as u64;
        state.used += frames.len() as u64;
        let used = state.used;
        drop(state);
        metrics::gauge!("custodian_spool_bytes").set(used as f64);
        Ok(())
    }

    /// Move every spooled record into `store`, oldest segment first, in
    /// batches of `batch`. Stops at the first store error (the segment stays
    /// and is replayed again next time: inserts are idempotent).
    pub async fn replay_into(
        self: &Arc<Self>,
        store: &dyn Store,
        batch: usize,
    ) -> Result<Replayed, ReplayError> {
        let mut done = Replayed::default();
        loop {
            let spool = Arc::clone(self);
            let Some((seq, path)) = tokio::task::spawn_blocking(move || spool.oldest_sealed())
                .await
                .map_err(SpoolError::from)??
            else {
                return Ok(done);
            };
            let read_path = path.clone();
            let bytes = tokio::task::spawn_blocking(move || fs::read(&read_path))
                .await
                .map_err(SpoolError::from)?
                .map_err(|e| SpoolError::Io(path.clone(), e))?;
            let (records, unreadable) = decode_records(&path, &bytes);
            for chunk in records.chunks(batch.max(1)) {
                insert_isolating(store, chunk).await?;
            }
            let spool = Arc::clone(self);
            tokio::task::spawn_blocking(move || spool.remove_segment(seq, bytes.len() as u64))
                .await
                .map_err(SpoolError::from)??;
            metrics::counter!("custodian_spool_records_total", "event" => "replayed")
                .increment(records.len() as u64);
            done.segments += 1;
            done.records += records.len() as u64;
            done.unreadable += unreadable;
        }
    }

    /// The oldest segment no longer appended to; the open one is sealed
    /// first when it is the only one left.
    fn oldest_sealed(&self) -> Result<Option<(u64, PathBuf)>, SpoolError> {
        let mut state = self.lock();
        let segments = list_segments(&self.dir)?;
        let open_seq = state.open.as_ref().map(|o| o.seq);
        let oldest = segments.iter().find(|(seq, _, _)| Some(*seq) != open_seq);
        if let Some((seq, path, _)) = oldest {
            return Ok(Some((*seq, path.clone())));
        }
        match state.open.take() {
            Some(open) => Ok(Some((open.seq, self.segment_path(open.seq)))),
            None => Ok(None),
        }
    }

    fn remove_segment(&self, seq: u64, len: u64) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let path = self.segment_path(seq);
        fs::remove_file(&path).map_err(|e| SpoolError::Io(path, e))?;
        sync_dir(&self.dir)?;
        state.used = state.used.saturating_sub(len);
        let used = state.used;
        drop(state);
        self.writable.store(true, Ordering::Relaxed);
        let left = list_segments(&self.dir).map_or(0, |s| s.len());
        self.publish_gauges(used, left);
        Ok(())
    }

    fn publish_gauges(&self, used: u64, segments: usize) {
        metrics::gauge!("custodian_spool_bytes").set(used as f64);
        metrics::gauge!("custodian_spool_segments").set(segments as f64);
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{SEGMENT_SUFFIX}"))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Insert `records`. A record the store refuses outright (a permanent
/// error) is counted and skipped, so that it cannot hold the spool forever.
async fn insert_isolating(store: &dyn Store, records: &[Record]) -> Result<(), StoreError> {
    match store.insert_records(records).await {
        Err(e) if e.is_permanent() => {
            for record in records {
                match store.insert_records(std::slice::from_ref(record)).await {
                    Err(e) if e.is_permanent() => {
                        tracing::error!(error = %e, "the store refused a spooled record");
                        crate::recording::dropped("rejected_by_store", record);
                    }
                    other => other?,
                }
            }
            Ok(())
        }
        other => other,
    }
}

/// Segments in the directory, oldest first: (sequence, path, size).
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf, u64)>, SpoolError> {
    let entries = fs::read_dir(dir).map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
        let path = entry.path();
        let seq = path
            .extension()
            .filter(|ext| *ext == SEGMENT_SUFFIX)
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        if let Some(seq) = seq {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            segments.push((seq, path, bytes));
        }
    }
    segments.sort_by_key(|(seq, _, _)| *seq);
    Ok(segments)
}

/// Every record waiting in the spool at `dir` (for `custodian attest`:
/// what is on disk, not yet in the store), read without taking the spool.
pub fn waiting_records(dir: &Path) -> Result<Vec<Record>, SpoolError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut records = Vec::new();
    for (_, path, _) in list_segments(dir)? {
        let bytes = fs::read(&path).map_err(|e| SpoolError::Io(path.clone(), e))?;
        records.extend(decode_records(&path, &bytes).0);
    }
    Ok(records)
}

/// A file's creation or removal is durable only once its directory is synced.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::Io(dir.to_owned(), e))
}

fn encode_records(records: &[Record]) -> Result<Vec<u8>, SpoolError> {
    let mut out = Vec::new();
    let mut payload = Vec::new();
    for record in records {
        payload.clear();
        ciborium::into_writer(record, &mut payload)
            .map_err(|e| SpoolError::Encode(e.to_string()))?;
        segment::encode_frame(&payload, &mut out);
    }
    Ok(out)
}

/// The records of a segment, and how many frames could not be read back.
/// Everything unreadable is logged and counted, never fatal.
pub fn decode_records(path: &Path, bytes: &[u8]) -> (Vec<Record>, u64) {
    let (frames, bad_tail) = segment::decode(bytes);
    let mut unreadable = 0;
    if let Some(bad) = bad_tail {
        unreadable += 1;
        metrics::counter!("custodian_spool_unreadable_total", "reason" => "bad_tail").increment(1);
        tracing::error!(segment = %path.display(), problem = %bad, kept_frames = frames.len(),
            "spool segment damaged; the frames before the damage are replayed, the rest skipped");
    }
    let mut records = Vec::with_capacity(frames.len());
    for frame in frames {
        match ciborium::from_reader::<Record, _>(frame) {
            Ok(record) => records.push(record),
            Err(e) => {
                unreadable += 1;
                metrics::counter!("custodian_spool_unreadable_total", "reason" => "undecodable")
                    .increment(1);
                tracing::error!(segment = %path.display(), error = %e, "spool frame skipped");
            }
        }
    }
    (records, unreadable)
}
