//! Pure policy decisions: no I/O, no async, no clock of their own.
//! Every input (configuration, consent history, request, instant) is passed in.

pub mod access;
pub mod retention;
pub mod rules;
pub mod training;

pub use retention::{
    content_kept, record_expiry, ContentKept, RecordExpiry, Retention, RetentionError,
};
pub use training::{decide_training_use, TrainingInputs};
