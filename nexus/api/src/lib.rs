//! Nexus's v1 HTTP API, shared by the server (`nexus`), the CLI (`spike`) and applications.
//!
//! The shapes are SPIKE's (every call `POST`, the operation in `?action=`, JSON bodies, errors
//! as `{"err": code}`), so SPIKE clients work unchanged. Where Nexus goes further it only adds
//! fields and actions: check-and-set on put, `destroy`, `createdBy`, per-caller filtered lists,
//! `/v1/status` and a human `message` beside every error code.
//!
//! - [`routes`]: paths and actions.
//! - [`model`]: request and response bodies.
//! - [`error`]: error codes, their HTTP statuses and the error body.
//! - [`client`]: a typed client over SPIFFE mTLS (feature `client`); without it this crate
//!   is serde types only, with no runtime, TLS or database dependency.

#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod model;
pub mod routes;

#[cfg(feature = "client")]
pub use client::{Client, ClientError};
pub use error::{ErrorBody, ErrorCode};
