//! The agent: attests its node to the server, keeps SVIDs for local workloads fresh and serves
//! the SPIFFE Workload API on a Unix socket.
//!
//! - [`node`]: the agent's own identity (join token attestation, stored SVID, server link).
//! - [`manager`]: the sync loop and the cache of workload SVIDs.
//! - [`jwt_svids`]: JWT-SVIDs signed on demand and cached per entry and audience.
//! - [`workload`]: kernel-based caller attestation and the Workload API itself.
//! - [`metrics`]: Prometheus metrics (Workload API calls, cached SVIDs).
//! - [`cli`], [`config`], [`run`]: the `spire-agent` binary.

pub mod cli;
pub mod config;
pub mod jwt_svids;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod run;
pub mod svid;
pub mod workload;
