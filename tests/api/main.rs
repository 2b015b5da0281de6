//! Integration tests: the whole gateway in-process against a real loopback
//! upstream and real PostgreSQL and SQLite databases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should panic with the error"
)]

#[macro_use]
mod helpers;
mod abuse;
mod attest;
mod classifier;
mod cli;
mod consent;
mod console;
mod crash;
mod data_sharing;
mod egress_proxy;
mod encryption;
mod erasure;
mod export;
mod files;
mod hostile;
mod layout;
mod objects;
mod proxy;
mod replicas;
mod retention;
mod review;
mod review_edges;
mod scanning;
mod sdk;
mod spool;
mod store;
mod tcp_cut;
mod truncation;
mod upstream;
mod upstream_objects;
