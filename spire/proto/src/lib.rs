//! What the identity server and agent share: generated gRPC types, selectors, trust bundle
//! formats, JWT-SVID signing and validation, Unix-socket channels, SPIRE-style flag parsing
//! and the gRPC health check.
//!
//! - [`workload`]: the SPIFFE Workload API, exactly as the standard defines it (no proto
//!   package, so method paths are `/SpiffeWorkloadAPI/...`).
//! - [`server`]: our identity server's `Agent` (mTLS, for agents) and `Admin` (local Unix
//!   socket, for the `spire-server` CLI) services; [`refusal`] says why it refused an agent.

/// The SPIFFE Workload API (`SpiffeWorkloadAPI`).
pub mod workload {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("_");
}

/// The identity server's agent and admin APIs (`spire.server.v1`).
pub mod server {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("spire.server.v1");
}

pub mod bundle_format;
pub mod flags;
pub mod jwt_svid;
pub mod process;
pub mod refusal;
mod selector;
pub mod uds;
pub mod x509pop;

pub use selector::{MAX_SELECTOR_LEN, SelectorParseError};
