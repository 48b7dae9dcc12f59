//! SVIDs as bytes a test holds and presents itself: real ones (from the agent or read from
//! files), ones signed with the identity server's own CA key (what only that key's holder
//! could make, such as an expired SVID), and forgeries (self-signed, or from a CA nobody
//! trusts). [`client_tls`] presents any of them, or no certificate at all, over mTLS.

use std::path::Path;
use std::sync::Arc;

use identity::svid_tls::{self, SvidStore};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::stack::Server;

/// An SVID as a client presents it: DER chain (leaf first) and PKCS#8 DER key.
pub struct Svid {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

impl Svid {
    /// Reads a PEM certificate chain and PEM key.
    pub fn read(cert: &Path, key: &Path) -> Svid {
        let chain = pem::parse_many(std::fs::read(cert).expect("certificate file"))
            .expect("PEM certificates")
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        let key = pem::parse(std::fs::read(key).expect("key file"))
            .expect("PEM key")
            .into_contents();
        Svid { chain, key }
    }

    /// An SVID the Workload API handed out.
    pub fn from_workload(svid: &spiffe::X509Svid) -> Svid {
        Svid {
            chain: svid
                .cert_chain()
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
            key: svid.private_key().as_ref().to_vec(),
        }
    }
}

/// A signing CA: the identity server's (read from its data directory) or one of the test's
/// own making, which nothing trusts.
pub struct Ca {
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The identity server's current CA, with its private key from the data directory.
    pub fn of_server(server: &Server) -> Ca {
        let data = server.dir.join("data");
        let cert = std::fs::read_to_string(data.join("ca-cert.pem")).expect("CA certificate");
        let key = std::fs::read_to_string(data.join("ca-key.pem")).expect("CA key");
        let key = KeyPair::from_pem(&key).expect("CA key PEM");
        let cert_der = pem::parse(&cert).expect("CA PEM").into_contents();
        Ca {
            cert_der,
            issuer: Issuer::from_ca_cert_pem(&cert, key).expect("issuer"),
        }
    }

    /// An X509-SVID for `spiffe_id` (the leaf, then this CA), valid now.
    pub fn sign(&self, spiffe_id: &str) -> Svid {
        self.sign_with(svid_params(spiffe_id))
    }

    /// An X509-SVID for `spiffe_id` that expired in 2021.
    pub fn sign_expired(&self, spiffe_id: &str) -> Svid {
        let mut params = svid_params(spiffe_id);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign_with(params)
    }

    fn sign_with(&self, params: CertificateParams) -> Svid {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Svid {
            chain: vec![cert.der().to_vec(), self.cert_der.clone()],
            key: key.serialize_der(),
        }
    }
}

/// A self-signed certificate that looks like an X509-SVID for `spiffe_id`.
pub fn self_signed(spiffe_id: &str) -> Svid {
    let key = KeyPair::generate().expect("key");
    let cert = svid_params(spiffe_id).self_signed(&key).expect("self-sign");
    Svid {
        chain: vec![cert.der().to_vec()],
        key: key.serialize_der(),
    }
}

/// What an X509-SVID leaf for `spiffe_id` holds (X509-SVID 4: one URI SAN, not a CA).
fn svid_params(spiffe_id: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().expect("URI SAN"))];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A client TLS config presenting `svid` (or no certificate) and accepting only a server
/// whose SVID is `server` and verifies against `bundle` (DER CA certificates). No ALPN, so
/// the server speaks HTTP/1.1 (for [`crate::mtls`]).
pub fn client_tls(
    bundle: &[Vec<u8>],
    svid: Option<&Svid>,
    server: &str,
) -> Arc<rustls::ClientConfig> {
    let store = Arc::new(SvidStore::new(bundle).expect("trust bundle"));
    if let Some(svid) = svid {
        store.set_svid(&svid.chain, &svid.key).expect("SVID");
    }
    let server = identity::SpiffeId::new(server).expect("server SPIFFE ID");
    let mut config =
        svid_tls::client_config(store, svid_tls::exactly(server)).expect("client TLS config");
    config.alpn_protocols.clear();
    Arc::new(config)
}
