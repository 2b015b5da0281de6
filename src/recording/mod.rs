//! Where a record goes after the response: the batching writer, and the
//! disk spool (and journal) that holds records while the store is slow or
//! down.

pub mod spool;
pub mod writer;

use crate::domain::records::Record;

/// A record the gateway could not store: counted and logged (ids only).
pub(crate) fn dropped(reason: &'static str, record: &Record) {
    metrics::counter!("custodian_records_dropped_total", "reason" => reason).increment(1);
    tracing::error!(
        record_id = %record.meta.id,
        tenant = %record.meta.tenant,
        reason,
        "record not stored"
    );
}
