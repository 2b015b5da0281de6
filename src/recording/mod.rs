//! Where a record goes after the response: the batching writer, and the
//! disk spool (and journal) that holds records while the store is slow or
//! down.

pub mod spool;
pub mod writer;
