//! What contractors see of a payload: personal data redacted (`redact`).
//! Who may see what is decided in `policy::access`; the review API is
//! `http::review`.

pub mod redact;
