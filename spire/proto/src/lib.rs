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
    include!("../generated/_.rs");
}

/// The identity server's agent and admin APIs (`spire.server.v1`).
pub mod server {
    #![allow(missing_docs, clippy::all)]
    include!("../generated/spire.server.v1.rs");
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

/// The generated code in `generated/` is checked in (the protobuf compiler is a separate
/// program, `spire/proto/codegen`, so that builds do not compile it); each file names the
/// SHA-256 of the `.proto` files it was made from, and this test fails when they changed
/// since.
#[cfg(test)]
mod generated_code {
    /// The inputs, in the order the generator hashes them.
    const PROTO_FILES: [&str; 2] = ["workload.proto", "spire_server.proto"];

    #[test]
    fn generated_code_matches_the_proto_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        for file in PROTO_FILES {
            let path = format!("{dir}proto/{file}");
            hash.update(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
        }
        let hash: String = hash
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for generated in ["_.rs", "spire.server.v1.rs"] {
            let path = format!("{dir}generated/{generated}");
            let code = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let header = code.lines().next().unwrap_or_default();
            assert!(
                header.contains(&format!("(sha256 {hash})")),
                "{path} was generated from other .proto files than today's; run \
                 `cargo run --manifest-path spire/proto/codegen/Cargo.toml` (header: {header})"
            );
        }
    }
}
