//! Custodian: a data-use policy gateway for LLM APIs.
//!
//! The modules follow the data path: `config` → `auth` (who is calling) →
//! `policy` (pure decisions) → `proxy` (forward and capture) → `store`
//! (batched persistence). `startup` is the one place that wires them.

pub mod abuse;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod classifier;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod data_sharing;
pub mod domain;
pub mod error;
pub mod export;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod objects;
pub mod policy;
pub mod proxy;
pub mod review;
pub mod spool;
pub mod startup;
pub mod store;
pub mod suspensions;
pub mod sweeper;
pub mod telemetry;
