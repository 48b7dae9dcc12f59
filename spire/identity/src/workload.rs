//! mTLS for workloads that get their SVIDs from the agent's Workload API.
//!
//! Nexus, keepers, pilot and applications all use these three calls: [`x509_source`] to keep a
//! live SVID and bundle set, [`server_config`] and [`client_config`] to build rustls configs
//! from it with `spiffe-rustls`, which picks up rotated SVIDs and bundles on every new
//! handshake and authorises the peer by SPIFFE ID after chain verification against the bundle
//! of the peer's own trust domain.

use std::time::Duration;

use spiffe::{SpiffeId, TrustDomain, X509Source};
use spiffe_rustls::{Authorizer, TrustDomainPolicy, mtls_client, mtls_server};

use crate::IdentityError;

/// Connects to the Workload API and waits for the first SVID.
///
/// `endpoint` is a `unix:///path/to/api.sock` URI; `None` reads `SPIFFE_ENDPOINT_SOCKET` as
/// every SPIFFE client does. Fails after `timeout` if no SVID arrived (for example because no
/// registration entry matches this process yet).
pub async fn x509_source(
    endpoint: Option<&str>,
    timeout: Duration,
) -> Result<X509Source, IdentityError> {
    let mut builder = X509Source::builder()
        .initial_sync_timeout(timeout)
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint(endpoint);
    }
    builder
        .build()
        .await
        .map_err(|e| IdentityError::WorkloadApi(e.to_string()))
}

/// The SPIFFE ID this process currently holds.
pub fn own_id(source: &X509Source) -> Result<SpiffeId, IdentityError> {
    let svid = source
        .svid()
        .map_err(|e| IdentityError::WorkloadApi(e.to_string()))?;
    Ok(svid.spiffe_id().clone())
}

/// A server config that requires a client SVID from `trust_domain` accepted by `authorizer`.
pub fn server_config(
    source: X509Source,
    trust_domain: TrustDomain,
    authorizer: impl Authorizer,
) -> Result<rustls::ServerConfig, IdentityError> {
    mtls_server(source)
        .trust_domain_policy(TrustDomainPolicy::LocalOnly(trust_domain))
        .authorize(authorizer)
        .build()
        .map_err(|e| IdentityError::Tls(e.to_string()))
}

/// A client config that presents our SVID and requires a server SVID from `trust_domain`
/// accepted by `authorizer`.
pub fn client_config(
    source: X509Source,
    trust_domain: TrustDomain,
    authorizer: impl Authorizer,
) -> Result<rustls::ClientConfig, IdentityError> {
    mtls_client(source)
        .trust_domain_policy(TrustDomainPolicy::LocalOnly(trust_domain))
        .authorize(authorizer)
        .build()
        .map_err(|e| IdentityError::Tls(e.to_string()))
}

/// An authorizer accepting exactly one SPIFFE ID (the same one as for in-memory SVIDs).
pub use crate::svid_tls::exactly;
