//! Journal mode (`spool.journal = true`): every record is appended to the
//! spool, and synced, before the end of its response is released to the
//! client. A gateway killed at any instant has then a durable record of
//! every response a client received in full; the replay task moves them
//! into the store. Appends are grouped: one fsync covers every record that
//! ended while the previous one was running.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::Spool;
use crate::domain::records::Record;

/// Resolves once the record is on disk (or could not be journaled, in
/// which case it went to the writer's queue instead and was counted).
pub type Journaled = oneshot::Receiver<()>;

/// A record, who waits for it, and its room in the queue's byte budget.
type Entry = (Record, oneshot::Sender<()>, OwnedSemaphorePermit);

#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Entry>,
    /// The writer's byte budget, shared: the journal is a queue too.
    room: Arc<Semaphore>,
}

impl Journal {
    /// Hand `record` (weighing `weight` bytes) to the journal; gives it back
    /// when the journal is full, out of room or stopped, for the caller to
    /// queue it the ordinary way.
    pub fn submit(&self, record: Record, weight: u32) -> Result<Journaled, Box<Record>> {
        let Ok(room) = Arc::clone(&self.room).try_acquire_many_owned(weight) else {
            return Err(Box::new(record));
        };
        let (ack, journaled) = oneshot::channel();
        match self.tx.try_send((record, ack, room)) {
            Ok(()) => Ok(journaled),
            Err(e) => Err(Box::new(e.into_inner().0)),
        }
    }
}

/// Start the journal task. Records it cannot append are given to
/// `fallback` (the writer's queue). It ends once every `Journal` is dropped.
pub fn spawn(
    spool: Arc<Spool>,
    room: Arc<Semaphore>,
    capacity: usize,
    max_group: usize,
    fallback: impl Fn(Record) + Send + 'static,
) -> (Journal, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Entry>(capacity);
    let task = tokio::spawn(async move {
        let mut group: Vec<Entry> = Vec::with_capacity(max_group);
        while rx.recv_many(&mut group, max_group).await > 0 {
            let mut records = Vec::with_capacity(group.len());
            let mut acks = Vec::with_capacity(group.len());
            let mut held = Vec::with_capacity(group.len());
            for (record, ack, room) in group.drain(..) {
                records.push(record);
                acks.push(ack);
                held.push(room);
            }
            let appended = spool.append(&records).await;
            if let Err(e) = appended {
                metrics::counter!("custodian_journal_failures_total", "reason" => e.reason())
                    .increment(records.len() as u64);
                tracing::error!(error = %e, records = records.len(),
                    "journaling records failed; queued for the store instead");
                records.into_iter().for_each(&fallback);
            }
            for ack in acks {
                let _ = ack.send(());
            }
            drop(held);
        }
    });
    (Journal { tx, room }, task)
}
