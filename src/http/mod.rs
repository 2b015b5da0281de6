//! The HTTP surfaces beside the data path: the admin listener (health,
//! readiness, metrics), the review API, and the one mapping of errors to
//! responses in the upstream's error shape.

pub mod admin;
pub mod error;
pub mod review;
