//! The end-to-end suites as one test binary: one module per suite, each starting the real
//! binaries in temporary directories.
//!
//! One binary, not one per suite: every test binary links the whole workspace, and on a
//! two-core machine the links dominated the build. `cargo test -p tests --test e2e secrets::`
//! runs one suite; `cargo test -p tests --test e2e -- --list` lists every test.
//!
//! Tests here share a process, so none may change process-wide state (environment
//! variables, resource limits, the working directory). A suite that must do so lives in its
//! own binary beside this one: `hostile_network.rs` raises the open-files limit and floods
//! every listener with thousands of connections, which would starve whichever test ran next
//! to it on a two-core machine.

mod admin_cli;
mod agent_api;
mod apps;
mod authz_matrix;
mod ca_rotation;
mod cli_json;
mod crash;
mod dn;
mod federated_callers;
mod federation;
mod identity;
mod jwt;
mod keeper;
mod key_manager;
mod kv2;
mod limits;
mod oidc;
mod quickstart;
mod rekey;
mod replicas;
mod runtime_federation;
mod seal;
mod secrets;
mod shutdown;
mod upstream_authority;
mod workload_api;
mod workload_limits;
mod x509pop;
