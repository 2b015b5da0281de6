//! What runs periodically.

pub mod sweeper;
