//! Nexus: the secrets service.
//!
//! Secrets are versioned maps of strings, sealed with envelope encryption under a root key that
//! exists only in memory and as Shamir shards held by keepers. Every connection is mTLS with
//! SVIDs; every call is authorised by the caller's SPIFFE ID.
//!
//! - [`config`]: flags and environment; [`mod@run`]: wiring.
//! - [`service`]: the shared state every request and task is handed; [`error`]: what an
//!   operation reports; [`clock`]: the one source of dates.
//! - [`keys`]: the root key's life: first start, unseal from keepers, rotation, break-glass,
//!   sealing of records.
//! - [`secrets`]: versioned secrets.
//! - [`policy`]: policies, their compiled cache and its sync across replicas.
//! - [`cipher`]: encryption as a service, under a key of its own.
//! - [`store`]: the datastore (SQLite or PostgreSQL through sqlx); it only sees sealed records.
//! - [`validate`]: input limits.
//! - [`authz`]: who may call what: the route table the API is built from, and the grants
//!   the operations take as proof.
//! - [`api`]: the SPIKE-compatible v1 HTTP API.
//! - [`audit`]: one JSON line per request, written before the answer.
//! - [`metrics`]: Prometheus metrics, on a port of their own.

pub mod api;
pub mod audit;
pub mod authz;
pub mod cipher;
pub mod clock;
pub mod config;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod run;
pub mod secrets;
pub mod service;
pub mod store;
pub mod validate;

pub use config::Config;
pub use run::run;
