//! The review queue: who may see flagged requests (access), what
//! contractors see (redact), and the admin API over it (api).

pub mod access;
pub mod redact;
