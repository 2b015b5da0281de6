//! The review desk and what it shows: every action on the review queue,
//! the audit log, principals and tenants' overviews, behind one gate
//! (`desk`), for the admin API (`http::review`) and the web console
//! (`console`) alike. Who may do what is decided in `policy::access`;
//! `redact` is what contractors see of a payload; `conversation` reads an
//! exchange as a conversation.

pub mod audit;
pub mod conversation;
mod decisions;
pub mod desk;
pub mod payload;
pub mod principals;
pub mod redact;
pub mod tenants;

pub use desk::{Caller, Desk, DeskError};
