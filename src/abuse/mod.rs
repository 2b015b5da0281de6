//! Abuse checks beyond the inline rules (which are pure decisions, in
//! `policy::rules`): reading bodies for the rules (`scan`), request rates
//! (`rate`), the asynchronous moderation classifier, and the suspensions
//! confirmed abuse triggers.

pub mod classifier;
pub mod rate;
pub mod scan;
pub mod suspensions;
