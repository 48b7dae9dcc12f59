//! The server's X.509 certificate authority, and its JWT signing key ([`JwtAuthority`]).
//!
//! The CA is an ECDSA P-256 certificate for `spiffe://<trust-domain>`, self-signed or signed by
//! an upstream authority, whose certificate lives in the server's data directory
//! (`ca-cert.pem`) and whose private key lives in the key manager ([`keys`]: a 0600 file
//! `ca-key.pem` beside it, or an object in a PKCS#11 token that never leaves it). It issues X509-SVIDs for workloads, agents and the server itself, either over
//! the public key of a PKCS#10 CSR ([`Ca::sign_csr`]) or over a freshly generated key
//! ([`Ca::mint`]).
//!
//! Issued SVIDs follow the X509-SVID standard and SPIRE's conventions, because SPIFFE clients
//! (rust-spiffe, py-spiffe, go-spiffe) reject certificates that break them:
//!
//! * exactly one URI SAN, the SPIFFE ID, which must have a non-root path;
//! * `basicConstraints` present and critical with `cA=false`;
//! * `keyUsage` critical with `digitalSignature`, `keyEncipherment` and `keyAgreement` and never
//!   `keyCertSign`/`cRLSign`; `extKeyUsage` `serverAuth` + `clientAuth`;
//! * random positive 128-bit serial, `NotBefore` back-dated by [`NOT_BEFORE_BACKDATE`] and
//!   `NotAfter` capped at the CA's own `NotAfter`.
//!
//! rcgen writes `keyUsage` and `basicConstraints` as critical extensions on its own (and writes
//! `basicConstraints` with `cA=false` for [`IsCa::ExplicitNoCa`]), so no hand-encoded extensions
//! are needed; the unit tests assert the criticality bits on the produced DER.
//!
//! The CA's own key is only ever asked to sign ([`CaKey`]). Keys minted for leaves are kept in
//! an rcgen [`KeyPair`] whose PKCS#8 copy is zeroized on drop; PKCS#8 bytes handed to callers
//! are [`Zeroizing`].

mod jwt;
pub mod keys;
mod manager;
mod storage;
#[cfg(test)]
mod tests;
pub mod upstream;

pub use jwt::{JwtAuthority, SignedJwtSvid};
pub use keys::{CaKey, KeyManager, KeyManagerConfig};
pub use manager::{Authorities, Rotation, Step};

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use spiffe::{SpiffeId, TrustDomain};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use zeroize::{Zeroize, Zeroizing};

/// How far `NotBefore` is back-dated from the signing time, to tolerate clock skew between the
/// server and relying parties.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(10);

/// Default lifetime of a newly created CA certificate.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Smallest RSA modulus accepted in a CSR.
const MIN_RSA_BITS: usize = 2048;

/// OID of the X.520 `serialNumber` attribute (2.5.4.5).
const OID_DN_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// Errors from creating, loading or using the CA. Messages say what is wrong and, where it
/// helps, what to do about it.
#[derive(thiserror::Error, Debug)]
pub enum CaError {
    /// A CA file or the data directory could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The CSR could not be parsed, its signature does not verify, or its key is unsupported.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),

    /// The SPIFFE ID cannot be used for an X509-SVID (e.g. it has no path).
    #[error("invalid SPIFFE ID for an X509-SVID: {0}")]
    InvalidSpiffeId(String),

    /// The SPIFFE ID belongs to a trust domain other than the CA's.
    #[error("SPIFFE ID {spiffe_id} is not in the CA's trust domain {expected}")]
    WrongTrustDomain {
        /// The rejected SPIFFE ID.
        spiffe_id: String,
        /// The CA's trust domain.
        expected: String,
    },

    /// A requested DNS SAN is not a usable DNS name.
    #[error("invalid DNS name {0:?}: must be a non-empty ASCII host name")]
    InvalidDnsName(String),

    /// A JWT-SVID audience list is empty, too long, or holds an empty or oversized value.
    #[error("{0}")]
    InvalidAudience(String),

    /// A TTL is zero or too large to represent.
    #[error("invalid TTL: {0}")]
    InvalidTtl(String),

    /// The CA stored in the data directory was created for another trust domain.
    #[error(
        "the CA in {} is for trust domain {stored:?} but the server is configured for \
         {configured:?}; move the CA files away to create a new CA",
        path.display()
    )]
    TrustDomainMismatch {
        /// The stored CA certificate.
        path: PathBuf,
        /// Trust domain in the stored certificate.
        stored: String,
        /// Trust domain the server is configured for.
        configured: String,
    },

    /// The in-memory CA expired while the server was running; nothing can be signed.
    #[error(
        "the signing authority expired at {expired_at}; cannot sign until the server activates \
         its next one"
    )]
    CaExpired {
        /// The CA's `NotAfter`, RFC 3339.
        expired_at: String,
    },

    /// Certificate or CSR generation failed inside rcgen.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),

    /// The stored CA files are unreadable, inconsistent or incomplete.
    #[error("corrupt CA data: {0}")]
    Corrupt(String),

    /// The system random number generator failed.
    #[error("cryptographic failure: {0}")]
    Crypto(String),

    /// The key manager (the PKCS#11 module or token) failed or is misconfigured.
    #[error("key manager: {0}")]
    KeyManager(String),
}

/// A signed X509-SVID certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSvid {
    /// The SPIFFE ID in the leaf's URI SAN.
    pub spiffe_id: SpiffeId,
    /// DER certificates, leaf first. With a self-signed CA this is just `[leaf]`; the CA
    /// certificate itself belongs in the trust bundle, not the chain. With an upstream
    /// authority, the server's CA and the upstream intermediates follow the leaf.
    pub cert_chain: Vec<Vec<u8>>,
    /// The leaf's serial number as lowercase hexadecimal without leading zeros.
    pub serial_number: String,
    /// The leaf's `NotAfter` in Unix seconds.
    pub expires_at: i64,
}

/// An SVID together with the private key it was minted for.
pub struct MintedSvid {
    /// The signed certificate chain.
    pub svid: SignedSvid,
    /// The leaf's private key, PKCS#8 DER; zeroized on drop.
    pub private_key_pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for MintedSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedSvid")
            .field("svid", &self.svid)
            .field("private_key_pkcs8", &"[redacted]")
            .finish()
    }
}

/// An rcgen key pair whose PKCS#8 copy is wiped when it is dropped.
struct SecretKey(KeyPair);

impl SecretKey {
    fn generate() -> Result<Self, CaError> {
        Ok(Self(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?))
    }

    fn pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.serialize_der())
    }
}

impl Deref for SecretKey {
    type Target = KeyPair;

    fn deref(&self) -> &KeyPair {
        &self.0
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The certificate authority: a CA certificate and its private key, which stays in the key
/// manager ([`keys`]).
pub struct Ca {
    trust_domain: TrustDomain,
    cert_der: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key: Arc<dyn CaKey>,
    /// Certificates above this CA's in every chain it hands out (the upstream CA and its
    /// intermediates); empty for a self-signed CA or one signed directly by a root.
    chain: Vec<Vec<u8>>,
    /// The roots of the upstream authority, which the bundle carries instead of this CA;
    /// empty for a self-signed CA.
    roots: Vec<Vec<u8>>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// The trust domain this CA issues SVIDs for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// What the trust bundle carries for this CA: the CA itself when self-signed, the
    /// upstream authority's roots otherwise.
    pub fn bundle_certs(&self) -> Vec<Vec<u8>> {
        if self.roots.is_empty() {
            vec![self.cert_der.clone()]
        } else {
            self.roots.clone()
        }
    }

    /// Whether an upstream authority signed this CA.
    pub fn is_upstream_signed(&self) -> bool {
        !self.roots.is_empty()
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.clone()))
    }

    /// The CA certificate's `NotBefore`, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before.unix_timestamp()
    }

    /// The CA certificate's `NotAfter`, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.unix_timestamp()
    }

    /// Signs a workload or agent SVID for `spiffe_id` over the public key of a PKCS#10 CSR.
    ///
    /// The CSR's signature must verify (proof of possession); its subject, SANs and requested
    /// extensions are ignored. `spiffe_id` must be in the CA's trust domain with a non-root
    /// path. The leaf's `NotAfter` is `now + ttl`, capped at the CA's `NotAfter`.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
    ) -> Result<SignedSvid, CaError> {
        self.check_leaf_id(spiffe_id)?;
        let public_key = csr_public_key(csr_der)?;
        self.issue(&public_key, spiffe_id, ttl, dns_names, now())
    }

    /// Generates a fresh P-256 key and signs an SVID for it (used by `x509 mint` and for the
    /// server's own SVID `spiffe://<td>/spire/server`). Same rules as [`Ca::sign_csr`].
    pub fn mint(
        &self,
        spiffe_id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
    ) -> Result<MintedSvid, CaError> {
        self.check_leaf_id(spiffe_id)?;
        let key = SecretKey::generate()?;
        let svid = self.issue(&*key, spiffe_id, ttl, dns_names, now())?;
        Ok(MintedSvid {
            svid,
            private_key_pkcs8: key.pkcs8(),
        })
    }

    /// Creates a new CA over `key`, valid from `now - NOT_BEFORE_BACKDATE` to `now + ca_ttl`:
    /// self-signed, or signed by `upstream` (and then expiring no later than it does).
    pub(crate) fn generate(
        td: &TrustDomain,
        key: Arc<dyn CaKey>,
        ca_ttl: Duration,
        now: OffsetDateTime,
        upstream: Option<&upstream::Credentials>,
    ) -> Result<Ca, CaError> {
        let mut not_after = add_ttl(now, ca_ttl, "CA TTL")?;
        if let Some(up) = upstream {
            let up_not_after = OffsetDateTime::from_unix_timestamp(up.not_after)
                .map_err(|e| CaError::Corrupt(format!("upstream NotAfter out of range: {e}")))?;
            if up_not_after <= now {
                return Err(CaError::CaExpired {
                    expired_at: rfc3339(up_not_after),
                });
            }
            not_after = not_after.min(up_not_after);
        }
        let not_before = now - NOT_BEFORE_BACKDATE;
        let serial = random_serial()?;

        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("US")?);
        dn.push(DnType::OrganizationName, printable("SPIFFE")?);
        dn.push(
            DnType::CustomDnType(OID_DN_SERIAL_NUMBER.to_vec()),
            printable(&serial.to_string())?,
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(td.id_string())?)];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before;
        params.not_after = not_after;

        params.use_authority_key_identifier_extension = upstream.is_some();
        let public = keys::RcgenKey(key.as_ref());
        let cert = match upstream {
            None => params.self_signed(&public)?,
            Some(up) => {
                let issuer =
                    Issuer::from_ca_cert_der(&CertificateDer::from(up.cert.as_slice()), &*up.key)?;
                params.signed_by(&public, &issuer)?
            }
        };
        Ok(Ca {
            trust_domain: td.clone(),
            cert_der: cert.der().to_vec(),
            not_before,
            not_after,
            key,
            chain: upstream.map(|u| u.chain.clone()).unwrap_or_default(),
            roots: upstream.map(|u| u.roots.clone()).unwrap_or_default(),
        })
    }

    /// Writes the certificate atomically (the key is already in the key manager: the order
    /// [`manager`] relies on to tell an interrupted preparation from an interrupted
    /// activation).
    /// With an upstream authority the file holds this CA's certificate, then the chain above
    /// it, then the roots.
    pub(crate) fn store(&self, cert_path: &Path) -> Result<(), CaError> {
        let mut text = self.cert_pem();
        for der in self.chain.iter().chain(&self.roots) {
            text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())));
        }
        storage::write_atomic(cert_path, text.as_bytes(), 0o644)
    }

    /// Loads and validates a stored CA certificate, and its key `key_name` from `keys` (which
    /// must match the certificate). Whether it has expired is for the caller to decide.
    pub(crate) fn load(
        cert_path: &Path,
        keys: &dyn KeyManager,
        key_name: &str,
        td: &TrustDomain,
    ) -> Result<Ca, CaError> {
        let corrupt = |what: String| CaError::Corrupt(format!("{}: {what}", cert_path.display()));
        let cert_pem = storage::read_string(cert_path)?;
        let mut certs = pem::parse_many(&cert_pem)
            .map_err(|e| corrupt(format!("invalid PEM: {e}")))?
            .into_iter()
            .map(|block| {
                (block.tag() == "CERTIFICATE")
                    .then(|| block.into_contents())
                    .ok_or_else(|| corrupt("holds a PEM block that is not a CERTIFICATE".into()))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let cert_der = certs
            .next()
            .ok_or_else(|| corrupt("no CERTIFICATE PEM block found".into()))?;
        let (roots, chain): (Vec<_>, Vec<_>) = certs.partition(|der| upstream::is_self_issued(der));
        let (rest, x509) = X509Certificate::from_der(&cert_der)
            .map_err(|e| corrupt(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(corrupt("trailing data after the certificate".into()));
        }
        match x509.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(corrupt(
                    "not a CA certificate (basicConstraints cA is not set)".into(),
                ));
            }
        }
        let point = x509.public_key().subject_public_key.data.as_ref();
        let key = keys.load(key_name, Some(point))?;

        let uris = uri_sans(&x509).map_err(|e| corrupt(format!("bad subjectAltName: {e}")))?;
        let [uri] = uris.as_slice() else {
            return Err(corrupt(format!(
                "expected exactly one URI SAN (spiffe://<trust-domain>), found {}",
                uris.len()
            )));
        };
        let stored_td = TrustDomain::new(uri)
            .map_err(|e| corrupt(format!("URI SAN {uri:?} is not a SPIFFE trust domain: {e}")))?;
        if &stored_td != td {
            return Err(CaError::TrustDomainMismatch {
                path: cert_path.to_path_buf(),
                stored: stored_td.to_string(),
                configured: td.to_string(),
            });
        }

        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();

        Ok(Ca {
            trust_domain: stored_td,
            cert_der,
            not_before,
            not_after,
            key,
            chain,
            roots,
        })
    }

    /// Checks that `id` can be the subject of an X509-SVID issued by this CA.
    fn check_leaf_id(&self, id: &SpiffeId) -> Result<(), CaError> {
        if !id.is_member_of(&self.trust_domain) {
            return Err(CaError::WrongTrustDomain {
                spiffe_id: id.to_string(),
                expected: self.trust_domain.to_string(),
            });
        }
        if id.path().is_empty() {
            return Err(CaError::InvalidSpiffeId(format!(
                "{id} has no path; an X509-SVID must name a workload, not the trust domain"
            )));
        }
        Ok(())
    }

    /// Builds and signs a leaf X509-SVID over `public_key`.
    fn issue(
        &self,
        public_key: &impl PublicKeyData,
        spiffe_id: &SpiffeId,
        ttl: Duration,
        dns_names: &[String],
        now: OffsetDateTime,
    ) -> Result<SignedSvid, CaError> {
        self.check_leaf_id(spiffe_id)?;
        if now >= self.not_after {
            return Err(CaError::CaExpired {
                expired_at: rfc3339(self.not_after),
            });
        }
        let not_after = add_ttl(now, ttl, "SVID TTL")?.min(self.not_after);
        let not_before = (now - NOT_BEFORE_BACKDATE).max(self.not_before);

        let mut dns: Vec<&str> = Vec::with_capacity(dns_names.len());
        for name in dns_names {
            if !dns.contains(&name.as_str()) {
                dns.push(name);
            }
        }

        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("US")?);
        dn.push(DnType::OrganizationName, printable("SPIRE")?);
        if let Some(first) = dns.first() {
            dn.push(DnType::CommonName, dn_string(first));
        }
        params.distinguished_name = dn;

        let mut sans = Vec::with_capacity(1 + dns.len());
        sans.push(SanType::URI(Ia5String::try_from(spiffe_id.to_string())?));
        for name in &dns {
            sans.push(SanType::DnsName(dns_name(name)?));
        }
        params.subject_alt_names = sans;
        // ExplicitNoCa makes rcgen write a critical basicConstraints with cA=false (plus SKI).
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;

        // The issuer's name and key identifier are taken from the CA certificate itself, so the
        // leaf's issuer DN is byte-identical to the CA subject and its AKI equals the CA's SKI.
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(self.cert_der.as_slice()),
            keys::RcgenKey(self.key.as_ref()),
        )?;
        let cert = params.signed_by(public_key, &issuer)?;

        // A self-signed CA is in every bundle, so the chain is the leaf alone (as SPIRE's);
        // an upstream-signed one is not, so it and the upstream intermediates follow the leaf.
        let mut cert_chain = vec![cert.der().to_vec()];
        if self.is_upstream_signed() {
            cert_chain.push(self.cert_der.clone());
            cert_chain.extend(self.chain.iter().cloned());
        }
        Ok(SignedSvid {
            spiffe_id: spiffe_id.clone(),
            cert_chain,
            serial_number: format!("{serial:x}"),
            expires_at: not_after.unix_timestamp(),
        })
    }
}

/// Generates a P-256 key and a PKCS#10 CSR for it, as an agent does before asking the server
/// for an SVID. The CSR has an empty subject and, when `spiffe_id` is given, that ID as its only
/// URI SAN (the server ignores both and decides the identity itself).
///
/// Returns the CSR (DER) and the private key (PKCS#8 DER, zeroized on drop).
pub fn new_csr(spiffe_id: Option<&SpiffeId>) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), CaError> {
    let key = SecretKey::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(id) = spiffe_id {
        params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id.to_string())?)];
    }
    let csr = params.serialize_request(&*key)?;
    Ok((csr.der().to_vec(), key.pkcs8()))
}

/// Parses a PKCS#10 CSR, verifies its self-signature and returns its public key.
/// The OID arc of the ECDSA signature algorithms (ecdsa-with-SHA224 ... SHA512).
const ECDSA_SIGNATURES: &str = "1.2.840.10045.4.3.";

fn csr_public_key(csr_der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der).map_err(|e| {
        CaError::InvalidCsr(format!("not a DER PKCS#10 certification request: {e}"))
    })?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCsr(
            "trailing data after the certification request".into(),
        ));
    }
    let spki = &csr.certification_request_info.subject_pki;
    // Checked first: ring refuses small RSA keys, which would otherwise surface as a
    // misleading signature failure.
    if let Ok(PublicKey::RSA(rsa)) = spki.parsed()
        && rsa.key_size() < MIN_RSA_BITS
    {
        return Err(CaError::InvalidCsr(format!(
            "RSA key of {} bits is too small (minimum {MIN_RSA_BITS})",
            rsa.key_size()
        )));
    }
    // x509-parser checks an Ed25519 (or RSA) signature against the key's raw bytes whatever
    // algorithm the key claims, and rcgen copies that claim into the certificate: a request
    // signed with Ed25519 that calls its key P-256 would get an SVID with a malformed key.
    let signature = &csr.signature_algorithm.algorithm;
    let key = &spki.algorithm.algorithm;
    let matches = if *signature == OID_SIG_ED25519 {
        *key == OID_SIG_ED25519
    } else if signature.to_id_string().starts_with(ECDSA_SIGNATURES) {
        *key == OID_KEY_TYPE_EC_PUBLIC_KEY
    } else {
        *key == OID_PKCS1_RSAENCRYPTION || *key == OID_PKCS1_RSASSAPSS
    };
    if !matches {
        return Err(CaError::InvalidCsr(format!(
            "the public key's algorithm {key} does not match the signature algorithm {signature}"
        )));
    }
    csr.verify_signature().map_err(|e| {
        CaError::InvalidCsr(format!(
            "signature does not verify with the request's own public key (no proof of \
             possession): {e}"
        ))
    })?;
    rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| {
        CaError::InvalidCsr(format!(
            "unsupported public key algorithm {}: {e}",
            spki.algorithm.algorithm
        ))
    })
}

/// All URI SANs of a certificate.
fn uri_sans(x509: &X509Certificate<'_>) -> Result<Vec<String>, x509_parser::error::X509Error> {
    let mut uris = Vec::new();
    for ext in x509.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    uris.push((*uri).to_string());
                }
            }
        }
    }
    // Surface a duplicate or unparseable SAN extension instead of silently ignoring it.
    x509.subject_alternative_name()?;
    Ok(uris)
}

/// Decodes exactly one PEM block with the given tag.
fn single_pem(text: &str, tag: &str, path: &Path) -> Result<Vec<u8>, CaError> {
    let blocks = pem::parse_many(text)
        .map_err(|e| CaError::Corrupt(format!("{}: invalid PEM: {e}", path.display())))?;
    let mut contents = None;
    let mut count = 0usize;
    for block in blocks {
        count += 1;
        if block.tag() == tag && contents.is_none() {
            contents = Some(block.into_contents());
        } else {
            // Wipe anything else we decoded (it may be key material).
            block.into_contents().zeroize();
        }
    }
    match contents {
        Some(c) if count == 1 => Ok(c),
        Some(mut c) => {
            c.zeroize();
            Err(CaError::Corrupt(format!(
                "{}: expected a single {tag} PEM block, found {count} blocks",
                path.display()
            )))
        }
        None => Err(CaError::Corrupt(format!(
            "{}: no {tag} PEM block found",
            path.display()
        ))),
    }
}

/// A uniformly random serial in [1, 2^128 - 1]. rcgen encodes it as a positive DER INTEGER
/// (prepending a zero byte when the top bit is set), so it is at most 17 content bytes.
fn random_serial() -> Result<u128, CaError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    loop {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)
            .map_err(|_| CaError::Crypto("system random number generator failed".into()))?;
        let serial = u128::from_be_bytes(bytes);
        if serial != 0 {
            return Ok(serial);
        }
    }
}

/// `now + ttl`, rejecting zero and unrepresentable TTLs.
fn add_ttl(now: OffsetDateTime, ttl: Duration, what: &str) -> Result<OffsetDateTime, CaError> {
    if ttl.is_zero() {
        return Err(CaError::InvalidTtl(format!(
            "{what} must be greater than zero"
        )));
    }
    time::Duration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_add(d))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| CaError::InvalidTtl(format!("{what} of {}s is too large", ttl.as_secs())))
}

/// The current time, truncated to whole seconds (X.509 times have second precision).
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("invariant: 0 is a valid nanosecond")
}

/// `2024-01-02T03:04:05Z`.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn printable(s: &str) -> Result<DnValue, CaError> {
    Ok(DnValue::PrintableString(PrintableString::try_from(s)?))
}

/// PrintableString when possible (as Go does), otherwise UTF8String (e.g. `*` in wildcards).
fn dn_string(s: &str) -> DnValue {
    match PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_owned()),
    }
}

/// Validates a DNS SAN: non-empty, ASCII, no whitespace/control characters, at most 253 bytes.
fn dns_name(name: &str) -> Result<Ia5String, CaError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b'@');
    if !ok {
        return Err(CaError::InvalidDnsName(name.to_owned()));
    }
    Ia5String::try_from(name).map_err(|_| CaError::InvalidDnsName(name.to_owned()))
}
