//! mTLS for workloads that get their SVIDs from the agent's Workload API.
//!
//! Nexus, keepers, pilot and applications all use these three calls: [`x509_source`] to keep a
//! live SVID and bundle set, [`server_config`] and [`client_config`] to build rustls configs
//! from it with `spiffe-rustls`, which picks up rotated SVIDs and bundles on every new
//! handshake and authorises the peer by SPIFFE ID after chain verification against the bundle
//! of the peer's own trust domain.
//!
//! Which trust domains a peer may come from is a [`Trusted`]: the local one, plus the foreign
//! ones this process is configured to federate with (spiffe-rustls' allow list). A peer of a
//! foreign trust domain needs both: to be listed here, and its bundle delivered by the agent
//! (the registration entry `federatesWith` it). Listing alone is not trust, and a bundle alone
//! is not consent: the agent delivers the bundles its entries name, for whatever the
//! workload's other uses are.
//!
//! The handshake checks a peer once, when its connection opens. A server that keeps
//! connections alive asks [`unfederated`] on each request as well, so that a connection
//! opened while a federation stood does not outlive it.

use std::collections::BTreeSet;
use std::time::Duration;

use spiffe::{BundleSource, SpiffeId, TrustDomain, X509Bundle, X509Source};
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

/// The trust domains whose SVIDs a TLS end verifies: its own, and the foreign ones listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    local: TrustDomain,
    foreign: BTreeSet<TrustDomain>,
}

/// A foreign trust domain list that cannot be meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedError {
    /// The local trust domain listed as foreign.
    #[error("{0} is this process's own trust domain, always trusted; list only other ones")]
    Local(TrustDomain),
    /// A trust domain listed twice.
    #[error("{0} is listed twice")]
    Twice(TrustDomain),
}

impl Trusted {
    /// The local trust domain alone.
    pub fn local(trust_domain: TrustDomain) -> Self {
        Trusted {
            local: trust_domain,
            foreign: BTreeSet::new(),
        }
    }

    /// `local` and the `foreign` trust domains, each listed once and none of them `local`.
    pub fn new(
        local: TrustDomain,
        foreign: impl IntoIterator<Item = TrustDomain>,
    ) -> Result<Self, TrustedError> {
        let mut trusted = Trusted::local(local);
        for td in foreign {
            if td == trusted.local {
                return Err(TrustedError::Local(td));
            }
            if trusted.foreign.contains(&td) {
                return Err(TrustedError::Twice(td));
            }
            trusted.foreign.insert(td);
        }
        Ok(trusted)
    }

    /// The local trust domain.
    pub fn local_trust_domain(&self) -> &TrustDomain {
        &self.local
    }

    /// The foreign trust domains, in name order.
    pub fn foreign(&self) -> impl Iterator<Item = &TrustDomain> {
        self.foreign.iter()
    }

    /// Whether a peer of `trust_domain` may be verified at all.
    pub fn accepts(&self, trust_domain: &TrustDomain) -> bool {
        *trust_domain == self.local || self.foreign.contains(trust_domain)
    }

    /// spiffe-rustls' policy: the local trust domain only, or the allow list.
    fn policy(&self) -> TrustDomainPolicy {
        if self.foreign.is_empty() {
            TrustDomainPolicy::LocalOnly(self.local.clone())
        } else {
            let mut all = self.foreign.clone();
            all.insert(self.local.clone());
            TrustDomainPolicy::AllowList(all)
        }
    }
}

impl From<TrustDomain> for Trusted {
    fn from(local: TrustDomain) -> Self {
        Trusted::local(local)
    }
}

/// The trust domain of `peer` if it is not `local` and `bundles` (a live [`X509Source`], the
/// set the TLS end verifies against) no longer holds a bundle of it: its federation was
/// removed since the peer's connection opened. A source that cannot answer (closed, at
/// shutdown) holds nothing. `None` for a local peer or one whose bundle is still there.
pub fn unfederated<B>(bundles: &B, local: &str, peer: &SpiffeId) -> Option<TrustDomain>
where
    B: BundleSource<Item = X509Bundle>,
{
    if peer.trust_domain_name() == local {
        return None;
    }
    match bundles.bundle_for_trust_domain(peer.trust_domain()) {
        Ok(Some(_)) => None,
        Ok(None) | Err(_) => Some(peer.trust_domain().clone()),
    }
}

/// A server config that requires a client SVID from a `trusted` trust domain (given as one
/// [`TrustDomain`] when there is no other) accepted by `authorizer`.
pub fn server_config(
    source: X509Source,
    trusted: impl Into<Trusted>,
    authorizer: impl Authorizer,
) -> Result<rustls::ServerConfig, IdentityError> {
    mtls_server(source)
        .trust_domain_policy(trusted.into().policy())
        .authorize(authorizer)
        .build()
        .map_err(|e| IdentityError::Tls(e.to_string()))
}

/// A client config that presents our SVID and requires a server SVID from a `trusted` trust
/// domain accepted by `authorizer`.
pub fn client_config(
    source: X509Source,
    trusted: impl Into<Trusted>,
    authorizer: impl Authorizer,
) -> Result<rustls::ClientConfig, IdentityError> {
    mtls_client(source)
        .trust_domain_policy(trusted.into().policy())
        .authorize(authorizer)
        .build()
        .map_err(|e| IdentityError::Tls(e.to_string()))
}

/// An authorizer accepting exactly one SPIFFE ID (the same one as for in-memory SVIDs).
pub use crate::svid_tls::exactly;

#[cfg(test)]
mod tests {
    use super::*;

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).expect("trust domain")
    }

    #[test]
    fn a_foreign_peer_is_unfederated_once_its_bundle_is_gone() {
        let id = |s: &str| SpiffeId::new(s).expect("SPIFFE ID");
        let mut bundles = spiffe::X509BundleSet::new();
        bundles.add_bundle(X509Bundle::new(td("a.org")));
        bundles.add_bundle(X509Bundle::new(td("b.org")));
        // Local peers are never asked about: this process's own bundle is not the point.
        assert_eq!(
            unfederated(
                &spiffe::X509BundleSet::new(),
                "a.org",
                &id("spiffe://a.org/app")
            ),
            None
        );
        assert_eq!(
            unfederated(&bundles, "a.org", &id("spiffe://b.org/app")),
            None
        );
        assert_eq!(
            unfederated(&bundles, "a.org", &id("spiffe://c.org/app")),
            Some(td("c.org"))
        );
        // The federation with b.org removed: its bundle is no longer delivered.
        let mut without_b = spiffe::X509BundleSet::new();
        without_b.add_bundle(X509Bundle::new(td("a.org")));
        assert_eq!(
            unfederated(&without_b, "a.org", &id("spiffe://b.org/app")),
            Some(td("b.org"))
        );
    }

    #[test]
    fn trusted_lists_foreign_trust_domains_once_and_never_the_local_one() {
        let local = Trusted::local(td("a.org"));
        assert!(local.accepts(&td("a.org")));
        assert!(!local.accepts(&td("b.org")));
        assert!(matches!(local.policy(), TrustDomainPolicy::LocalOnly(t) if t == td("a.org")));

        let federated = Trusted::new(td("a.org"), [td("c.org"), td("b.org")]).expect("valid");
        for (name, accepted) in [
            ("a.org", true),
            ("b.org", true),
            ("c.org", true),
            ("d.org", false),
        ] {
            assert_eq!(federated.accepts(&td(name)), accepted, "{name}");
            assert_eq!(federated.policy().allows(&td(name)), accepted, "{name}");
        }
        let foreign: Vec<String> = federated.foreign().map(ToString::to_string).collect();
        assert_eq!(foreign, ["b.org", "c.org"]);
        assert_eq!(federated.local_trust_domain(), &td("a.org"));

        assert_eq!(
            Trusted::new(td("a.org"), [td("b.org"), td("a.org")]),
            Err(TrustedError::Local(td("a.org")))
        );
        assert_eq!(
            Trusted::new(td("a.org"), [td("b.org"), td("b.org")]),
            Err(TrustedError::Twice(td("b.org")))
        );
        assert_eq!(
            TrustedError::Local(td("a.org")).to_string(),
            "a.org is this process's own trust domain, always trusted; list only other ones"
        );
    }
}
