//! The batching writer: records go through a bounded in-memory queue to one
//! task that inserts them in multi-row batches, off the client's path.
//! When the store fails or is slower than `writer.store_timeout`, batches go
//! to the disk spool instead, and the replay task moves them into the store
//! once it answers again (while anything is spooled, new batches are spooled
//! behind it, so the store receives records in the order they were spooled).
//!
//! Nothing is dropped silently: a record that cannot be queued or written is
//! counted in `custodian_records_dropped_total{reason}` and logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{SpoolConfig, WhenUnrecordable, WriterConfig};
use crate::domain::records::Record;
use crate::recording::dropped;
use crate::recording::spool::journal::{self, Journal, Journaled};
use crate::recording::spool::Spool;
use crate::store::{Store, StoreError};

/// Attempts per batch once shutdown has begun (then it is counted as lost).
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// Where records can go right now; shared by the writer, the replay task
/// and admission.
pub struct Durability {
    /// False from a failed or timed-out store write until the spool has been
    /// replayed (or, without a spool, until a write succeeds).
    store_ok: AtomicBool,
    spool: Option<Arc<Spool>>,
    fail_closed: bool,
    /// Journal mode: every record goes through the spool.
    journal: bool,
}

impl Durability {
    pub fn new(spool: Option<Arc<Spool>>, when_unavailable: WhenUnrecordable) -> Self {
        Self {
            store_ok: AtomicBool::new(true),
            spool,
            fail_closed: when_unavailable == WhenUnrecordable::FailClosed,
            journal: false,
        }
    }

    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    fn set_store_ok(&self, ok: bool) {
        let was = self.store_ok.swap(ok, Ordering::Relaxed);
        if was != ok {
            metrics::gauge!("custodian_store_up").set(if ok { 1.0 } else { 0.0 });
            match ok {
                true => tracing::info!("the store takes records again"),
                false => tracing::warn!(
                    spool = self.spool.is_some(),
                    "the store is not taking records; spooling them"
                ),
            }
        }
    }

    /// False only in fail-closed mode while neither the store nor the
    /// spool can take a record: new requests are then refused.
    pub fn admits_requests(&self) -> bool {
        !self.fail_closed || self.store_ok() || self.spool.as_ref().is_some_and(|s| s.can_accept())
    }
}

/// A record in the queue with its place in the queue's byte budget, given
/// back once the record is written (or spooled, or counted as lost).
pub(crate) struct Queued {
    record: Record,
    _room: OwnedSemaphorePermit,
}

/// The sending side, cloned into every request.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Queued>,
    /// Bytes of records queued or being written (`writer.queue_max_bytes`).
    room: Arc<Semaphore>,
    room_total: usize,
    max_wait: Duration,
    durability: Arc<Durability>,
    journal: Option<Journal>,
}

/// What a record weighs in the queue's byte budget: its bodies and a
/// margin for the rest.
fn weight(record: &Record, budget: usize) -> u32 {
    let bodies = record
        .content
        .as_ref()
        .map_or(0, |c| c.request_body.len() + c.response_body.len());
    // A record larger than the whole budget still goes, alone.
    u32::try_from((bodies + 1024).min(budget)).unwrap_or(u32::MAX)
}

impl RecordSink {
    /// See [`Durability::admits_requests`].
    pub fn admits_requests(&self) -> bool {
        self.durability.admits_requests()
    }

    /// Admission, before a request is forwarded: while the queue is full
    /// (the store is behind), wait up to `max_wait` for room. Clients slow to
    /// the store's pace instead of records being dropped. The room is not
    /// held: requests in flight never occupy the queue.
    pub async fn wait_for_room(&self) {
        if self.tx.capacity() > 0 && self.room.available_permits() > 0 {
            return;
        }
        metrics::counter!("custodian_record_queue_waits_total").increment(1);
        let room = async {
            let _ = self.tx.reserve().await;
            let _ = self.room.acquire().await;
        };
        let _ = tokio::time::timeout(self.max_wait, room).await;
    }

    /// Hand over a finished exchange's record. In journal mode the answer
    /// resolves once it is on disk, and the response's end waits for it.
    pub fn submit(&self, record: Record) -> Option<Journaled> {
        let Some(journal) = &self.journal else {
            self.enqueue(record);
            return None;
        };
        let weight = weight(&record, self.room_size());
        match journal.submit(record, weight) {
            Ok(journaled) => Some(journaled),
            Err(record) => {
                metrics::counter!("custodian_journal_bypassed_total").increment(1);
                self.enqueue(*record);
                None
            }
        }
    }

    /// Queue a record. Never blocks the response path: when the queue is
    /// full, a task waits up to `max_wait` for room, then the record goes
    /// to the spool (or, without one, is counted as dropped). (Admission
    /// keeps the number of such tasks near the number of requests in flight.)
    fn room_size(&self) -> usize {
        self.room_total
    }

    fn enqueue(&self, record: Record) {
        let weight = weight(&record, self.room_size());
        let record = match Arc::clone(&self.room).try_acquire_many_owned(weight) {
            Ok(room) => match self.tx.try_send(Queued {
                record,
                _room: room,
            }) {
                Ok(()) => return,
                Err(TrySendError::Closed(q)) => return dropped("shutting_down", &q.record),
                Err(TrySendError::Full(q)) => q.record,
            },
            Err(_) => record,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return dropped("shutting_down", &record);
        };
        let (tx, room, max_wait) = (self.tx.clone(), Arc::clone(&self.room), self.max_wait);
        let spool = self.durability.spool.clone();
        runtime.spawn(async move {
            let queued = async {
                let room = room.acquire_many_owned(weight).await.ok()?;
                Some((tx.reserve().await.ok()?, room))
            };
            match tokio::time::timeout(max_wait, queued).await {
                Ok(Some((slot, room))) => slot.send(Queued {
                    record,
                    _room: room,
                }),
                Ok(None) => dropped("shutting_down", &record),
                Err(_) => match spool {
                    Some(spool) => {
                        if let Err(e) = spool.append(std::slice::from_ref(&record)).await {
                            dropped(e.reason(), &record);
                        }
                    }
                    None => dropped("queue_full", &record),
                },
            }
        });
    }
}

/// Start the writer. It runs until `shutdown` is cancelled, then drains
/// what is queued and returns.
pub fn spawn(
    store: Arc<dyn Store>,
    config: &WriterConfig,
    durability: Arc<Durability>,
    shutdown: CancellationToken,
) -> (RecordSink, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let room_total = config.queue_max_bytes.min(Semaphore::MAX_PERMITS);
    let mut sink = RecordSink {
        tx,
        room: Arc::new(Semaphore::new(room_total)),
        room_total,
        max_wait: config.max_enqueue_wait,
        durability: Arc::clone(&durability),
        journal: None,
    };
    let journal_task = match (&durability.spool, durability.journal) {
        (Some(spool), true) => {
            let fallback = sink.clone();
            let (journal, task) = journal::spawn(
                Arc::clone(spool),
                Arc::clone(&sink.room),
                config.queue_capacity,
                config.batch_size,
                move |record| fallback.enqueue(record),
            );
            sink.journal = Some(journal);
            Some(task)
        }
        _ => None,
    };
    let writer = Writer {
        store,
        batch_size: config.batch_size,
        flush_interval: config.flush_interval,
        shutdown_grace: config.shutdown_grace,
        max_backoff: config.max_retry_backoff,
        store_timeout: config.store_timeout,
        durability,
    };
    let handle = tokio::spawn(async move {
        writer.run(rx, shutdown).await;
        if let Some(task) = journal_task {
            let _ = task.await;
        }
    });
    (sink, handle)
}

/// Open the spool (when enabled) and say where records can go.
pub fn durability(
    config: &SpoolConfig,
) -> Result<Arc<Durability>, crate::recording::spool::SpoolError> {
    let spool = match config.enabled {
        true => Some(Arc::new(Spool::open(config)?)),
        false => None,
    };
    let mut durability = Durability::new(spool, config.when_unavailable);
    durability.journal = config.journal;
    Ok(Arc::new(durability))
}

/// Move spooled records into the store every `interval`, and notice when
/// the store is back. Runs until `shutdown`, then makes one last pass.
pub fn spawn_replay(
    store: Arc<dyn Store>,
    durability: Arc<Durability>,
    batch_size: usize,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // One last pass at shutdown, for what the writer spooled as it stopped.
    let job = crate::jobs::Job::every("spool_replay", interval)
        .after_first_interval()
        .with_last_run_at_shutdown();
    let failing = Arc::new(AtomicBool::new(false));
    crate::jobs::spawn(job, shutdown, move || {
        let (store, durability, failing) = (
            Arc::clone(&store),
            Arc::clone(&durability),
            Arc::clone(&failing),
        );
        async move {
            let was_failing = failing.load(Ordering::Relaxed);
            let ok = replay_pass(store.as_ref(), &durability, batch_size, was_failing).await;
            failing.store(!ok, Ordering::Relaxed);
            // A failed pass logs itself, once per outage (not every second).
            Ok::<(), std::convert::Infallible>(())
        }
    })
}

/// One replay pass; true when the store took everything spooled.
async fn replay_pass(
    store: &dyn Store,
    durability: &Durability,
    batch_size: usize,
    failing: bool,
) -> bool {
    let Some(spool) = &durability.spool else {
        return true;
    };
    if spool.is_empty() {
        if durability.store_ok() {
            return true;
        }
        let up = store.ping().await.is_ok();
        if up {
            durability.set_store_ok(true);
        }
        return up;
    }
    match spool.replay_into(store, batch_size).await {
        Ok(done) => {
            if done.records > 0 || done.unreadable > 0 {
                tracing::info!(
                    records = done.records,
                    segments = done.segments,
                    unreadable = done.unreadable,
                    "spooled records replayed into the store"
                );
            }
            if spool.is_empty() {
                durability.set_store_ok(true);
            }
            true
        }
        Err(e) => {
            // Once per outage at warn; the retries every interval at debug.
            match failing {
                false => tracing::warn!(error = %e, "spool replay failed; will retry"),
                true => tracing::debug!(error = %e, "spool replay failed; will retry"),
            }
            durability.set_store_ok(false);
            false
        }
    }
}

/// Records gathered for one write, with their room in the queue's budget
/// (held until the write is done: they are in memory until then).
struct Batch {
    records: Vec<Record>,
    room: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Self {
            records: Vec::with_capacity(n),
            room: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, queued: Queued) {
        self.records.push(queued.record);
        self.room.push(queued._room);
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    /// The write is done (stored, spooled or counted): give the room back.
    fn written(&mut self) {
        self.room.clear();
    }
}

struct Writer {
    store: Arc<dyn Store>,
    batch_size: usize,
    flush_interval: Duration,
    shutdown_grace: Duration,
    max_backoff: Duration,
    store_timeout: Duration,
    durability: Arc<Durability>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
        let mut batch = Batch::with_capacity(self.batch_size);
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
            self.write(&mut batch.records, Some(&shutdown)).await;
            batch.written();
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
                    self.write(&mut batch.records, None).await;
                    batch.written();
                }
                Ok(None) => break,
                Err(_) => {
                    rx.close();
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                        self.fill(&mut rx, &mut batch);
                        self.write(&mut batch.records, None).await;
                        batch.written();
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
        rx: &mut mpsc::Receiver<Queued>,
        batch: &mut Batch,
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

    fn fill(&self, rx: &mut mpsc::Receiver<Queued>, batch: &mut Batch) {
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
        error: &StoreError,
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

    /// Spool `batch` when the store is known to be down (or was just found
    /// so). Returns false when there is no spool or it cannot take the batch.
    async fn spooled(&self, batch: &mut Vec<Record>) -> bool {
        let Some(spool) = &self.durability.spool else {
            return false;
        };
        match spool.append(batch).await {
            Ok(()) => {
                batch.clear();
                true
            }
            Err(e) => {
                metrics::counter!("custodian_spool_append_errors_total", "reason" => e.reason())
                    .increment(1);
                tracing::error!(error = %e, records = batch.len(), "spooling records failed");
                false
            }
        }
    }

    /// One store write, bounded by `store_timeout` (a store that hangs is
    /// as good as down). A timed-out write may still commit: the spool's
    /// replay of the same ids is then a no-op.
    async fn insert(&self, batch: &[Record]) -> Result<(), StoreError> {
        match tokio::time::timeout(self.store_timeout, self.store.insert_records(batch)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.store_timeout)),
        }
    }

    /// Write `batch`: to the store while it answers, to the spool while it
    /// does not. Without a spool (or with the spool full) it retries the
    /// store with backoff: before shutdown until it succeeds; after, a few
    /// times, then counts the batch as lost.
    async fn write(&self, batch: &mut Vec<Record>, shutdown: Option<&CancellationToken>) {
        if !self.durability.store_ok() && self.spooled(batch).await {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.insert(batch).await {
                Ok(()) => {
                    metrics::counter!("custodian_records_written_total")
                        .increment(batch.len() as u64);
                    batch.clear();
                    if self.durability.spool.is_none() {
                        self.durability.set_store_ok(true);
                    }
                    return;
                }
                Err(e) if e.is_permanent() => {
                    metrics::counter!("custodian_record_write_errors_total").increment(1);
                    self.isolate(batch, shutdown, &e).await;
                    return;
                }
                Err(e) => {
                    metrics::counter!("custodian_record_write_errors_total").increment(1);
                    self.durability.set_store_ok(false);
                    if self.spooled(batch).await {
                        return;
                    }
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
