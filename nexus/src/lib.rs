//! Nexus: the secrets service.
//!
//! Secrets are versioned maps of strings, sealed with envelope encryption under a root key that
//! exists only in memory and as Shamir shards held by keepers. Every connection is mTLS with
//! SVIDs; every call is authorised by the caller's SPIFFE ID.
//!
//! - [`config`]: flags and environment.
//! - [`store`]: the datastore (SQLite or PostgreSQL through sqlx); it only sees sealed records.
//! - [`sealing`]: envelope encryption of secret versions and policies.
//! - [`root_key`]: the in-memory root key and lifecycle status.
//! - [`unseal`]: create the root key on first start, rebuild it from keepers later, keep
//!   keepers seeded.
//! - [`keepers`]: the mTLS client for keepers.
//! - [`access`]: the compiled, cached policy set.
//! - [`policy_sync`]: keeping that cache current across replicas sharing one database.
//! - [`break_glass`]: recovery shards out (`recover`) and back in (`restore`).
//! - [`rotation`]: root key rotation, crash-safe at every step.
//! - [`cipher`]: encryption as a service, under a key of its own.
//! - [`service`]: secret and policy operations, independent of HTTP.
//! - [`validate`]: input limits.
//! - [`api`]: the SPIKE-compatible v1 HTTP API.
//! - [`audit_log`]: one JSON line per request, written before the answer.
//! - [`metrics`]: Prometheus metrics, on a port of their own.

pub mod access;
pub mod api;
pub mod audit_log;
pub mod break_glass;
pub mod cipher;
pub mod config;
pub mod keepers;
pub mod metrics;
pub mod policy_sync;
pub mod root_key;
pub mod rotation;
pub mod run;
pub mod sealing;
pub mod service;
pub mod store;
pub mod unseal;
pub mod validate;

pub use config::Config;
pub use run::run;
