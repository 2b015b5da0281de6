//! The batching writer: records go through a bounded in-memory queue to one
//! task that inserts them in multi-row batches, off the client's path.
//!
//! Nothing is dropped silently: a record that cannot be queued or written is
//! counted in `custodian_records_dropped_total{reason}` and logged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Record, Store};
use crate::config::WriterConfig;

/// Attempts per batch once shutdown has begun (then it is counted as lost).
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// The sending side, cloned into every request.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Record>,
    max_wait: Duration,
}

impl RecordSink {
    /// Admission, before a request is forwarded: while the queue is full
    /// (the store is behind), wait up to `max_wait` for room. Clients slow to
    /// the store's pace instead of records being dropped. The room is not
    /// held: requests in flight never occupy the queue.
    pub async fn wait_for_room(&self) {
        if self.tx.capacity() > 0 {
            return;
        }
        metrics::counter!("custodian_record_queue_waits_total").increment(1);
        let _ = tokio::time::timeout(self.max_wait, self.tx.reserve()).await;
    }

    /// Queue a record. Never blocks the response path: when the queue is
    /// full, a task waits up to `max_wait` for room before the record is
    /// counted as dropped. (Admission keeps the number of such tasks near the
    /// number of requests in flight.)
    pub fn submit(&self, record: Record) {
        let record = match self.tx.try_send(record) {
            Ok(()) => return,
            Err(TrySendError::Closed(r)) => return dropped("shutting_down", &r),
            Err(TrySendError::Full(r)) => r,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return dropped("shutting_down", &record);
        };
        let (tx, max_wait) = (self.tx.clone(), self.max_wait);
        runtime.spawn(async move {
            match tokio::time::timeout(max_wait, tx.reserve()).await {
                Ok(Ok(permit)) => permit.send(record),
                Ok(Err(_)) => dropped("shutting_down", &record),
                Err(_) => dropped("queue_full", &record),
            }
        });
    }
}

fn dropped(reason: &'static str, record: &Record) {
    metrics::counter!("custodian_records_dropped_total", "reason" => reason).increment(1);
    tracing::error!(
        record_id = %record.meta.id,
        tenant = %record.meta.tenant,
        reason,
        "record not stored"
    );
}

/// Start the writer. It runs until `shutdown` is cancelled, then drains
/// what is queued and returns.
pub fn spawn(
    store: Arc<dyn Store>,
    config: &WriterConfig,
    shutdown: CancellationToken,
) -> (RecordSink, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let sink = RecordSink {
        tx,
        max_wait: config.max_enqueue_wait,
    };
    let writer = Writer {
        store,
        batch_size: config.batch_size,
        flush_interval: config.flush_interval,
        shutdown_grace: config.shutdown_grace,
        max_backoff: config.max_retry_backoff,
    };
    let handle = tokio::spawn(writer.run(rx, shutdown));
    (sink, handle)
}

struct Writer {
    store: Arc<dyn Store>,
    batch_size: usize,
    flush_interval: Duration,
    shutdown_grace: Duration,
    max_backoff: Duration,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Record>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let first = tokio::select! {
                biased;
                r = rx.recv() => r,
                () = shutdown.cancelled() => break,
            };
            let Some(first) = first else { return };
            batch.push(first);
            self.linger(&mut rx, &mut batch, &shutdown).await;
            metrics::gauge!("custodian_record_queue_depth").set(rx.len() as f64);
            self.write(&mut batch, Some(&shutdown)).await;
        }
        // Shutdown: the listeners have stopped. Write what is queued and what
        // is still coming (exchanges ending, records waiting for room) until
        // every sender is gone, but for a bounded time only, so a stream that
        // never ends cannot hold the process up.
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => {
                    batch.push(r);
                    self.fill(&mut rx, &mut batch);
                    self.write(&mut batch, None).await;
                }
                Ok(None) => break,
                Err(_) => {
                    rx.close();
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                        self.fill(&mut rx, &mut batch);
                        self.write(&mut batch, None).await;
                    }
                    tracing::error!(
                        "exchanges still open after the shutdown deadline; their records are lost"
                    );
                    metrics::counter!("custodian_records_dropped_total", "reason" => "open_at_shutdown")
                        .increment(1);
                    break;
                }
            }
        }
        metrics::gauge!("custodian_record_queue_depth").set(0.0);
    }

    /// Gather records for up to `flush_interval` (or until the batch is
    /// full): fewer, larger transactions cost the database far less per
    /// record. Clients never wait for this; only the record does.
    async fn linger(
        &self,
        rx: &mut mpsc::Receiver<Record>,
        batch: &mut Vec<Record>,
        shutdown: &CancellationToken,
    ) {
        self.fill(rx, batch);
        let deadline = tokio::time::Instant::now() + self.flush_interval;
        while batch.len() < self.batch_size {
            tokio::select! {
                biased;
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        self.fill(rx, batch);
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(deadline) => return,
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn fill(&self, rx: &mut mpsc::Receiver<Record>, batch: &mut Vec<Record>) {
        while batch.len() < self.batch_size {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }

    /// A batch the store refuses outright: write its records one by one so
    /// that one bad record costs only itself, never the queue behind it.
    async fn isolate(
        &self,
        batch: &mut Vec<Record>,
        shutdown: Option<&CancellationToken>,
        error: &super::StoreError,
    ) {
        if batch.len() == 1 {
            tracing::error!(error = %error, "the store refused a record");
            for r in batch.drain(..) {
                dropped("rejected_by_store", &r);
            }
            return;
        }
        for record in std::mem::take(batch) {
            let mut one = vec![record];
            Box::pin(self.write(&mut one, shutdown)).await;
        }
    }

    /// Write `batch`, retrying with backoff while the store fails. Before
    /// shutdown it retries until it succeeds; after, a few times, then counts
    /// the batch as lost.
    async fn write(&self, batch: &mut Vec<Record>, shutdown: Option<&CancellationToken>) {
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.store.insert_records(batch).await {
                Ok(()) => {
                    metrics::counter!("custodian_records_written_total")
                        .increment(batch.len() as u64);
                    batch.clear();
                    return;
                }
                Err(e) if e.is_permanent() => {
                    metrics::counter!("custodian_record_write_errors_total").increment(1);
                    self.isolate(batch, shutdown, &e).await;
                    return;
                }
                Err(e) => {
                    metrics::counter!("custodian_record_write_errors_total").increment(1);
                    tracing::warn!(error = %e, records = batch.len(), attempt, "record batch write failed; retrying");
                }
            }
            let stopping = shutdown.is_none_or(CancellationToken::is_cancelled);
            if stopping && attempt >= SHUTDOWN_ATTEMPTS {
                for r in batch.drain(..) {
                    dropped("store_unavailable_at_shutdown", &r);
                }
                return;
            }
            match shutdown {
                Some(token) if !stopping => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = token.cancelled() => {}
                    }
                }
                _ => tokio::time::sleep(backoff).await,
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}
