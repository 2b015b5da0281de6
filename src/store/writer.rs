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
}

impl RecordSink {
    /// Reserve a place in the queue for a request's record before the
    /// request is forwarded. When the store falls behind, this is where
    /// clients wait (backpressure) instead of records being dropped; after
    /// `max_wait` the request goes on without a place.
    pub async fn reserve(&self, max_wait: Duration) -> RecordSlot {
        if let Ok(permit) = self.tx.clone().try_reserve_owned() {
            return RecordSlot {
                sink: self.clone(),
                permit: Some(permit),
            };
        }
        metrics::counter!("custodian_record_queue_waits_total").increment(1);
        let permit = match tokio::time::timeout(max_wait, self.tx.clone().reserve_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => None,
        };
        RecordSlot {
            sink: self.clone(),
            permit,
        }
    }

    /// Queue a record without waiting. Never blocks the response path.
    pub fn submit(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(r)) => dropped("queue_full", &r),
            Err(TrySendError::Closed(r)) => dropped("shutting_down", &r),
        }
    }
}

/// A request's place in the record queue (or the lack of one).
pub struct RecordSlot {
    sink: RecordSink,
    permit: Option<mpsc::OwnedPermit<Record>>,
}

impl RecordSlot {
    /// Queue the record: into the reserved place, else if one is free now.
    pub fn submit(self, record: Record) {
        match self.permit {
            // Sending on a closed channel would drop the record unseen.
            Some(_) if self.sink.tx.is_closed() => dropped("shutting_down", &record),
            Some(permit) => {
                permit.send(record);
            }
            None => self.sink.submit(record),
        }
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
    let writer = Writer {
        store,
        batch_size: config.batch_size,
        flush_interval: config.flush_interval,
        shutdown_grace: config.shutdown_grace,
        max_backoff: config.max_retry_backoff,
    };
    let handle = tokio::spawn(writer.run(rx, shutdown));
    (RecordSink { tx }, handle)
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
        // Shutdown: take no more, write what is queued. Exchanges still open
        // hold places in the queue; wait for their records a bounded time
        // only, so a stream that never ends cannot hold the process up.
        rx.close();
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
                    tracing::error!(
                        "exchanges still open after the shutdown deadline; their records are lost"
                    );
                    metrics::counter!("custodian_records_dropped_total", "reason" => "open_at_shutdown").increment(1);
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
