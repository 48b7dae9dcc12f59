//! SPIFFE mutual TLS for every role in this project.
//!
//! Every connection in the system is mutual TLS where both ends present X.509-SVIDs and check
//! the other end's SPIFFE ID. This crate is the one place that knows how:
//!
//! - [`peer`] reads the SPIFFE ID out of a verified peer certificate.
//! - [`clock`] is the one wall clock every role dates SVIDs, tokens and records with.
//! - [`svid_tls`] builds rustls configs from SVIDs held in memory. The identity server and agent
//!   use it for their own link, since they *are* the source of SVIDs and cannot fetch them from
//!   a Workload API.
//! - [`listener`] accepts mTLS connections with a budget for handshakes of its own and caps
//!   per client (`pending` decides who is pushed out of a full handshake budget), and
//!   [`failure`] says why a handshake failed, for metrics, logs and error messages.
//! - [`http`] serves axum routers and tonic services over it with every phase bounded
//!   (`common_net`), and [`https_client`] calls them.
//! - [`workload`] is for everything else (nexus, keepers, pilot, applications): SVIDs and
//!   bundles come live from the agent's Workload API through the `spiffe` crate's
//!   [`spiffe::X509Source`], and `spiffe-rustls` builds the rustls configs, so rotated SVIDs are
//!   picked up by new handshakes without a restart.

pub mod clock;
pub mod dial;
pub mod failure;
pub mod http;
pub mod https_client;
pub mod listener;
pub mod peer;
mod pending;
pub mod svid_tls;
pub mod workload;

pub use spiffe::{SpiffeId, TrustDomain};

/// Errors from building TLS configurations or reading identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A certificate could not be parsed or is not an X509-SVID.
    #[error("not a valid X509-SVID: {0}")]
    InvalidSvid(String),
    /// The private key could not be used with the certificate.
    #[error("unusable private key: {0}")]
    InvalidKey(String),
    /// The trust bundle holds no usable CA certificate.
    #[error("trust bundle is unusable: {0}")]
    InvalidBundle(String),
    /// The Workload API could not be reached or returned nothing usable.
    #[error("workload API: {0}")]
    WorkloadApi(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}
