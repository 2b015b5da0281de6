//! Custodian: a data-use policy gateway for LLM APIs.
//!
//! The tree follows the system (docs/architecture.md):
//! `domain` (the vocabulary) and `config`; `policy` (pure decisions: the
//! training tag, what content is kept, who may read it); `proxy` (the data
//! path: caller, rules, forward, relay, capture); `abuse` (rules, scanning,
//! classifier, suspensions); `objects` (tenants' upstream objects and kept
//! file copies); `recording` (where a record goes after the response);
//! `store` (persistence); `crypto` (sealing and keys); `review` (the queue);
//! `http` (admin listener, review API, error mapping); `jobs` (what runs
//! periodically); `export`; `attest` (proof that the policy held); `commands` (the CLI). `startup` wires them.

pub mod abuse;
pub mod attest;
pub mod commands;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod erasure;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jobs;
pub mod objects;
pub mod policy;
pub mod proxy;
pub mod recording;
pub mod review;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod wire;
