//! `custodian export training`: the records tagged usable for training, as
//! chat fine-tune JSONL.
//!
//! Only records whose tag was `allowed` when they were received are read
//! (never a ZDR tenant, never a request opted out by header), and only while
//! their content is live. The store streams them in `(received_at, id)`
//! order, so memory stays constant however many there are.
//!
//! Resumable and idempotent: every `CHECKPOINT_EVERY` records the output is
//! flushed and synced, the records written are marked with the export's id
//! in the store, and a progress file beside the output records the byte
//! offset and the cursor. A re-run after a crash truncates the output to the
//! last checkpoint and goes on from its cursor under the same export id. A
//! later export skips records a finished export took, unless asked not to;
//! an abandoned export holds nothing back.
//! When done, a manifest (counts, range, consent bases, skips) is written
//! beside the output and the run is audited.

pub mod finetune;
mod responses;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::ContentView;

use self::finetune::{finetune_line, Captured};
use crate::domain::audit::AuditEvent;
use crate::domain::clock::Clock;
use crate::domain::{Outcome, RecordId};
use crate::store::{ExportCandidate, ExportQuery, Store, StoreError};

/// Records between checkpoints: bounds the work a crash repeats.
const CHECKPOINT_EVERY: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub since: OffsetDateTime,
    /// `None`: now, when the export starts; a resumed export keeps the
    /// instant its first run chose.
    pub until: Option<OffsetDateTime>,
    pub out: PathBuf,
    /// Also export records an earlier export already took.
    pub include_exported: bool,
    /// Replace an existing output file that is not an unfinished export.
    pub overwrite: bool,
    /// Who runs it and from where, for the audit log.
    pub actor: String,
    pub source: String,
    /// Opens encrypted content, when encryption is on.
    pub keys: Option<std::sync::Arc<crate::crypto::ContentKeys>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists; choose another --out, or pass --overwrite to replace it")]
    OutputExists(PathBuf),
    #[error(
        "{0} belongs to an unfinished export with other options; rerun with the same \
         --since/--until/--include-exported to resume it, or delete it to start over \
         (an unfinished export's records are not held back from a new one)"
    )]
    ResumeMismatch(PathBuf),
    #[error("{path} is not a progress file this version can read: {detail}")]
    BadProgress { path: PathBuf, detail: String },
    #[error("--since must be before --until")]
    EmptyRange,
}

/// What a run did; also the manifest written beside the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub export_id: Uuid,
    pub format: String,
    pub output: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub include_exported: bool,
    pub lines: u64,
    pub bytes: u64,
    /// Lines written, by the consent basis that made each record usable.
    pub exported_by_basis: BTreeMap<String, u64>,
    /// Usable records not written, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records in the range that were not usable, by basis (never read).
    pub not_usable_by_basis: BTreeMap<String, i64>,
    /// Times this export was resumed after an interruption.
    pub resumed: u32,
}

/// The progress file: a manifest in the making plus where to go on.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    manifest: Manifest,
    #[serde(with = "time::serde::rfc3339::option")]
    cursor_received_at: Option<OffsetDateTime>,
    cursor_id: Option<Uuid>,
}

pub fn progress_path(out: &Path) -> PathBuf {
    suffixed(out, ".progress")
}

pub fn manifest_path(out: &Path) -> PathBuf {
    suffixed(out, ".manifest.json")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Run (or resume) an export. What has expired is decided at the start.
pub async fn run(
    store: &dyn Store,
    options: &ExportOptions,
    clock: &dyn Clock,
    progress_bar: &ProgressBar,
) -> Result<Manifest, ExportError> {
    let now = clock.now();
    if options.until.is_some_and(|until| options.since >= until) {
        return Err(ExportError::EmptyRange);
    }
    let (mut progress, file) = open_output(options, now)?;
    let mut writer = Checkpointer::new(&options.out, file, progress.manifest.bytes);
    let (since, until) = (progress.manifest.since, progress.manifest.until);
    if since >= until {
        return Err(ExportError::EmptyRange);
    }

    let counts = store.training_tag_counts(since, until, now).await?;
    let usable_total: i64 = counts
        .iter()
        .filter(|c| c.tag.usable)
        .map(|c| c.count)
        .sum();
    progress.manifest.not_usable_by_basis = counts
        .iter()
        .filter(|c| !c.tag.usable)
        .map(|c| (c.tag.basis.as_str().to_owned(), c.count))
        .collect();
    progress_bar.set_length(u64::try_from(usable_total).unwrap_or(0));

    let query = ExportQuery {
        since,
        until,
        now,
        after: progress
            .cursor_received_at
            .zip(progress.cursor_id)
            .map(|(at, id)| (at, RecordId(id))),
        export_id: progress.manifest.export_id,
    };
    let export_id = progress.manifest.export_id;
    let mut candidates = store.export_candidates(query);
    let mut since_checkpoint = 0;
    while let Some(candidate) = candidates.next().await {
        let candidate = candidate?;
        progress.cursor_received_at = Some(candidate.received_at);
        progress.cursor_id = Some(candidate.id.0);
        match line_for(&candidate, export_id, options) {
            Ok(line) => {
                writer.write_line(&line, (candidate.id, candidate.expires_at))?;
                progress.manifest.lines += 1;
                *progress
                    .manifest
                    .exported_by_basis
                    .entry(candidate.basis.as_str().to_owned())
                    .or_default() += 1;
            }
            Err(reason) => {
                *progress
                    .manifest
                    .skipped
                    .entry(reason.to_owned())
                    .or_default() += 1;
            }
        }
        progress_bar.inc(1);
        since_checkpoint += 1;
        if since_checkpoint >= CHECKPOINT_EVERY {
            writer.checkpoint(store, &mut progress, now).await?;
            since_checkpoint = 0;
        }
    }
    drop(candidates);
    writer.checkpoint(store, &mut progress, now).await?;
    progress_bar.finish_and_clear();
    finish(store, options, progress.manifest, clock.now()).await
}

/// The line for a candidate, or why there is none.
fn line_for(
    c: &ExportCandidate,
    export_id: Uuid,
    options: &ExportOptions,
) -> Result<String, &'static str> {
    if c.exported_by.is_some_and(|other| other != export_id) && !options.include_exported {
        return Err("already_exported");
    }
    let Some(content) = &c.content else {
        return Err("content_expired");
    };
    let (request, response) =
        match crate::crypto::open_content(options.keys.as_deref(), c.id, &c.tenant, content) {
            ContentView::Readable { request, response } => (request, response),
            ContentView::Expired => return Err("content_expired"),
            ContentView::Unreadable => return Err("content_unreadable"),
        };
    finetune_line(&Captured {
        path: &c.path,
        status: c.status,
        completed: c.outcome == Outcome::Completed,
        streamed: c.streamed,
        request: &request,
        response: &response,
        truncated: content.request_truncated || content.response_truncated,
    })
    .map_err(|r| r.as_str())
}

/// Open the output: resume an unfinished export, or start a new one.
fn open_output(
    options: &ExportOptions,
    now: OffsetDateTime,
) -> Result<(Progress, File), ExportError> {
    let out = &options.out;
    let progress_file = progress_path(out);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    match std::fs::read(&progress_file) {
        Ok(bytes) => {
            let mut progress: Progress =
                serde_json::from_slice(&bytes).map_err(|e| ExportError::BadProgress {
                    path: progress_file.clone(),
                    detail: e.to_string(),
                })?;
            let m = &progress.manifest;
            if m.since != options.since
                || options.until.is_some_and(|until| until != m.until)
                || m.include_exported != options.include_exported
            {
                return Err(ExportError::ResumeMismatch(progress_file));
            }
            progress.manifest.resumed += 1;
            let mut file = OpenOptions::new().write(true).open(out).map_err(io(out))?;
            // Lines after the last checkpoint are written again.
            file.set_len(progress.manifest.bytes).map_err(io(out))?;
            file.seek(SeekFrom::End(0)).map_err(io(out))?;
            Ok((progress, file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if out.exists() && !options.overwrite {
                return Err(ExportError::OutputExists(out.clone()));
            }
            let file = File::create(out).map_err(io(out))?;
            let progress = Progress {
                manifest: Manifest {
                    export_id: Uuid::now_v7(),
                    format: "openai-chat-finetune-jsonl".into(),
                    output: out.display().to_string(),
                    since: options.since,
                    until: options.until.unwrap_or(now),
                    started_at: now,
                    finished_at: None,
                    include_exported: options.include_exported,
                    lines: 0,
                    bytes: 0,
                    exported_by_basis: BTreeMap::new(),
                    skipped: BTreeMap::new(),
                    not_usable_by_basis: BTreeMap::new(),
                    resumed: 0,
                },
                cursor_received_at: None,
                cursor_id: None,
            };
            write_atomically(&progress_file, &progress)?;
            Ok((progress, file))
        }
        Err(e) => Err(ExportError::Io {
            path: progress_file,
            source: e,
        }),
    }
}

/// Writes lines and makes them durable in checkpoints: data synced, then
/// records marked, then the progress file replaced.
struct Checkpointer {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    pending: Vec<(RecordId, OffsetDateTime)>,
}

impl Checkpointer {
    fn new(path: &Path, file: File, bytes: u64) -> Self {
        Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(256 * 1024, file),
            bytes,
            pending: Vec::new(),
        }
    }

    fn io(&self, source: std::io::Error) -> ExportError {
        ExportError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_line(
        &mut self,
        line: &str,
        mark: (RecordId, OffsetDateTime),
    ) -> Result<(), ExportError> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.io(e))?;
        self.bytes += line.len() as u64 + 1;
        self.pending.push(mark);
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        store: &dyn Store,
        progress: &mut Progress,
        now: OffsetDateTime,
    ) -> Result<(), ExportError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))?;
        if !self.pending.is_empty() {
            store
                .mark_exported(progress.manifest.export_id, now, &self.pending)
                .await?;
            self.pending.clear();
        }
        progress.manifest.bytes = self.bytes;
        write_atomically(&progress_path(&self.path), progress)
    }
}

async fn finish(
    store: &dyn Store,
    options: &ExportOptions,
    mut manifest: Manifest,
    now: OffsetDateTime,
) -> Result<Manifest, ExportError> {
    manifest.finished_at = Some(now);
    write_atomically(&manifest_path(&options.out), &manifest)?;
    // Only now do this export's marks keep records from later exports.
    store.finish_export(manifest.export_id, now).await?;
    store
        .append_audit(&AuditEvent {
            at: now,
            actor: options.actor.clone(),
            action: "training.exported".into(),
            tenant: None,
            subject: Some(format!("export:{}", manifest.export_id)),
            source: options.source.clone(),
            details: serde_json::json!({
                "output": manifest.output,
                "since": format_instant(manifest.since),
                "until": format_instant(manifest.until),
                "lines": manifest.lines,
                "exported_by_basis": manifest.exported_by_basis,
                "skipped": manifest.skipped,
                "include_exported": manifest.include_exported,
            }),
        })
        .await?;
    // Done: a re-run now starts a new export rather than resuming this one.
    let progress_file = progress_path(&options.out);
    std::fs::remove_file(&progress_file).map_err(|source| ExportError::Io {
        path: progress_file,
        source,
    })?;
    Ok(manifest)
}

/// Replace `path` with `value` as JSON, never leaving a half-written file.
fn write_atomically(path: &Path, value: &impl Serialize) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = suffixed(path, ".tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io(e.into()))?;
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn format_instant(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Why an exchange makes no training line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    UnsupportedEndpoint,
    TruncatedCapture,
    UnsuccessfulExchange,
    InvalidRequest,
    InvalidResponse,
    NoAssistantMessage,
    UnsupportedContent,
    /// Part of the conversation is kept upstream (a previous response, a
    /// conversation), not in the capture.
    StoredContext,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedEndpoint => "unsupported_endpoint",
            Self::TruncatedCapture => "truncated_capture",
            Self::UnsuccessfulExchange => "unsuccessful_exchange",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidResponse => "invalid_response",
            Self::NoAssistantMessage => "no_assistant_message",
            Self::UnsupportedContent => "unsupported_content",
            Self::StoredContext => "stored_context",
        }
    }
}
