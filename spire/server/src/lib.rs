//! The identity server: a SPIFFE certificate authority with registration entries, node
//! attestation and a SQL datastore.
//!
//! - [`config`]: the `run` configuration (TOML file + flags).
//! - [`ca`]: the CA and JWT signing keys with their prepare/activate rotation, and signing
//!   X509-SVIDs to the letter of the standard.
//! - [`datastore`]: entries, agents, join tokens and bundles in SQLite or PostgreSQL.
//! - [`entries`]: validation of registration entries and which entries an agent may have.
//! - [`federation`]: bundles of other trust domains (set, or fetched from their endpoints)
//!   and which agents receive them; [`bundle_endpoint`]: serving ours.
//! - [`api`]: the gRPC services (agent API over mTLS, admin API over the local socket).
//! - [`oidc`]: OIDC discovery of the JWT keys, for relying parties that do not speak SPIFFE.
//! - [`serving_cert`]: the Web PKI certificate of OIDC discovery and the `https_web` bundle
//!   endpoint, re-read when renewed.
//! - [`metrics`]: Prometheus metrics (SVIDs signed, attestations, entries, agents).
//! - [`limits`]: the bounds of every listener (`[server.limits.*]`).
//! - [`rotation`]: rotating and publishing the authorities while the server runs.
//! - [`x509pop`]: the x509pop node attestor (join tokens are in [`api::agent`]).
//! - [`run`]: wiring it all together; [`cli`]: the `spire-server` command line.

pub mod api;
pub mod bundle_endpoint;
pub mod ca;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod entries;
pub mod federation;
pub mod limits;
pub mod metrics;
pub mod oidc;
pub mod rotation;
pub mod run;
pub mod serving_cert;
pub mod state;
pub mod x509pop;
