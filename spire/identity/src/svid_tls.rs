//! rustls configurations from SVIDs held in memory, for the identity server and agent.
//!
//! `spiffe-rustls` needs a live Workload API source; the server and agent *are* that source,
//! so their own link (agent attestation, entry sync, SVID signing) builds on rustls' WebPKI
//! verification here instead, adding the SPIFFE-specific part: the peer's SPIFFE ID (its one URI
//! SAN) is checked by an [`Authorizer`] instead of a DNS name. SVIDs and bundles live in an
//! [`SvidStore`] that can be swapped at run time, so rotation reaches new handshakes at once.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use spiffe::SpiffeId;
use spiffe_rustls::Authorizer as _;

use crate::IdentityError;
use crate::failure::PeerRefused;
use crate::peer::spiffe_id_from_cert;

/// Decides whether a verified peer SPIFFE ID may talk to us: `spiffe-rustls`' authoriser
/// (a closure `Fn(&SpiffeId) -> bool` is one), so the same authorisers serve these configs
/// and the Workload API ones of [`crate::workload`].
pub type Authorizer = Arc<dyn spiffe_rustls::Authorizer>;

/// An authorizer that accepts exactly one SPIFFE ID.
pub fn exactly(id: SpiffeId) -> Authorizer {
    Arc::new(move |peer: &SpiffeId| *peer == id)
}

/// Whether a server requires clients to present an SVID.
pub enum ClientAuth {
    /// Every client must present an SVID that the authorizer accepts.
    Required(Authorizer),
    /// Clients may connect without a certificate (e.g. to attest); one that presents an SVID
    /// must still verify and be accepted by the authorizer.
    Optional(Authorizer),
    /// No client certificate is asked for (a SPIFFE bundle endpoint, which must not require
    /// client authentication).
    None,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct State {
    key: Option<Arc<CertifiedKey>>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

/// This process's current SVID and its trust domain's bundle, replaceable at run time.
pub struct SvidStore {
    state: ArcSwap<State>,
}

impl fmt::Debug for SvidStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load();
        f.debug_struct("SvidStore")
            .field("has_svid", &state.key.is_some())
            .field("bundle_certs", &state.roots.len())
            .finish()
    }
}

impl SvidStore {
    /// A store with a trust bundle (DER CA certificates) and no SVID yet.
    pub fn new(bundle: &[Vec<u8>]) -> Result<Self, IdentityError> {
        let (roots, client_verifier) = build_roots(bundle)?;
        Ok(SvidStore {
            state: ArcSwap::from_pointee(State {
                key: None,
                roots,
                client_verifier,
            }),
        })
    }

    /// Installs a new SVID: its chain (DER, leaf first) and PKCS#8 private key.
    pub fn set_svid(&self, chain: &[Vec<u8>], pkcs8_key: &[u8]) -> Result<(), IdentityError> {
        let key = certified_key(chain, pkcs8_key)?;
        self.state.rcu(|old| State {
            key: Some(key.clone()),
            roots: old.roots.clone(),
            client_verifier: old.client_verifier.clone(),
        });
        Ok(())
    }

    /// Replaces the trust bundle (DER CA certificates).
    pub fn set_bundle(&self, bundle: &[Vec<u8>]) -> Result<(), IdentityError> {
        let (roots, client_verifier) = build_roots(bundle)?;
        self.state.rcu(|old| State {
            key: old.key.clone(),
            roots: roots.clone(),
            client_verifier: client_verifier.clone(),
        });
        Ok(())
    }

    fn key(&self) -> Option<Arc<CertifiedKey>> {
        self.state.load().key.clone()
    }
}

fn build_roots(
    bundle: &[Vec<u8>],
) -> Result<(Arc<RootCertStore>, Arc<dyn ClientCertVerifier>), IdentityError> {
    let mut roots = RootCertStore::empty();
    for der in bundle {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| IdentityError::InvalidBundle(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(IdentityError::InvalidBundle("no CA certificates".into()));
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    Ok((roots, client_verifier))
}

fn certified_key(chain: &[Vec<u8>], pkcs8_key: &[u8]) -> Result<Arc<CertifiedKey>, IdentityError> {
    let Some(leaf) = chain.first() else {
        return Err(IdentityError::InvalidSvid("empty certificate chain".into()));
    };
    spiffe_id_from_cert(leaf)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_key.to_vec()));
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| IdentityError::InvalidKey(e.to_string()))?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .map_err(|e| IdentityError::InvalidKey(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// A server config presenting the store's SVID and checking clients as `clients` says.
pub fn server_config(
    store: Arc<SvidStore>,
    clients: ClientAuth,
) -> Result<ServerConfig, IdentityError> {
    let (authorizer, mandatory) = match clients {
        ClientAuth::Required(a) => (a, true),
        ClientAuth::Optional(a) => (a, false),
        ClientAuth::None => {
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| IdentityError::Tls(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(StoreResolver(store)));
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            return Ok(config);
        }
    };
    let verifier = Arc::new(PeerVerifier {
        store: store.clone(),
        authorizer,
        mandatory,
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(StoreResolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // A resumed session keeps the identity of the handshake it resumes: an agent that first
    // connected without a certificate (to attest) would stay anonymous. Every connection
    // authenticates afresh instead.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A client config presenting the store's SVID (if it has one) and accepting a server whose
/// SVID verifies against the store's bundle and whose SPIFFE ID `server` accepts.
pub fn client_config(
    store: Arc<SvidStore>,
    server: Authorizer,
) -> Result<ClientConfig, IdentityError> {
    let verifier = Arc::new(PeerVerifier {
        store: store.clone(),
        authorizer: server,
        mandatory: true,
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(StoreResolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // See `server_config`: no resumption, so a renewed SVID is what the server sees.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

#[derive(Debug)]
struct StoreResolver(Arc<SvidStore>);

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.key()
    }
}

impl ResolvesClientCert for StoreResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.key()
    }

    fn has_certs(&self) -> bool {
        self.0.key().is_some()
    }
}

/// Verifies a peer's chain against the current bundle, then its SPIFFE ID with the authorizer.
struct PeerVerifier {
    store: Arc<SvidStore>,
    authorizer: Authorizer,
    mandatory: bool,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl PeerVerifier {
    fn authorize(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = spiffe_id_from_cert(end_entity)
            .map_err(|e| PeerRefused::NotSvid(e.to_string()).into_rustls())?;
        if self.authorizer.authorize(&id) {
            Ok(())
        } else {
            Err(PeerRefused::NotAuthorized(id).into_rustls())
        }
    }

    fn algorithms() -> WebPkiSupportedAlgorithms {
        provider().signature_verification_algorithms
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server is identified by its SPIFFE ID, not by a DNS name, so there is no
        // name check here: the authorizer decides.
        let cert = ParsedCertificate::try_from(end_entity)?;
        let roots = self.store.state.load().roots.clone();
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            Self::algorithms().all,
        )?;
        self.authorize(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &Self::algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &Self::algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::algorithms().supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verifier = self.store.state.load().client_verifier.clone();
        verifier.verify_client_cert(end_entity, intermediates, now)?;
        self.authorize(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &Self::algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &Self::algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Self::algorithms().supported_schemes()
    }
}
