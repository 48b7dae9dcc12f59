//! An upstream authority on disk, as SPIRE's `disk` UpstreamAuthority: an existing CA (its
//! certificate and private key as PEM files) signs each of the server's CA certificates, so
//! the server's CA is an intermediate under a root the operator already runs.
//!
//! - `cert_file_path`: the upstream CA certificate first, then any intermediates above it.
//!   Without `bundle_file_path` the upstream certificate must be self-signed: it is the root.
//! - `key_file_path`: the upstream CA's private key, PKCS#8 PEM (ECDSA P-256/P-384, RSA or
//!   Ed25519, as rcgen signs with it).
//! - `bundle_file_path` (optional): the roots, when the upstream certificate is not one.
//!
//! The trust bundle then carries the roots (not the server's CA), and every SVID chain is the
//! leaf, the server's CA and the upstream intermediates. As SPIRE's plugin, the files are read
//! again each time a CA is signed (so the upstream can be rotated on disk without a restart),
//! and the credentials read last are used when a read fails.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::{CaError, SecretKey, storage};

/// `[server.upstream_authority.disk]`.
#[derive(Debug, Clone)]
pub struct DiskUpstreamConfig {
    pub cert_file_path: PathBuf,
    pub key_file_path: PathBuf,
    pub bundle_file_path: Option<PathBuf>,
}

/// What signs the server's CA certificates.
pub struct Credentials {
    /// The upstream CA certificate (DER): the issuer of the server's CA.
    pub cert: Vec<u8>,
    /// Certificates to send above the server's CA in every chain (the upstream certificate
    /// and its intermediates), empty when the upstream certificate is itself the root.
    pub chain: Vec<Vec<u8>>,
    /// The roots the trust bundle carries.
    pub roots: Vec<Vec<u8>>,
    /// The upstream's `NotAfter`, Unix seconds: no CA it signs outlives it.
    pub not_after: i64,
    pub(super) key: SecretKey,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The disk upstream authority.
#[derive(Debug)]
pub struct DiskUpstream {
    config: DiskUpstreamConfig,
    last: Mutex<Arc<Credentials>>,
}

impl DiskUpstream {
    /// Reads and checks the files; a problem is an error here, at start.
    pub fn open(config: DiskUpstreamConfig) -> Result<DiskUpstream, CaError> {
        let creds = read(&config)?;
        tracing::info!(
            cert = %config.cert_file_path.display(),
            roots = creds.roots.len(),
            "upstream authority loaded"
        );
        Ok(DiskUpstream {
            config,
            last: Mutex::new(Arc::new(creds)),
        })
    }

    /// The credentials, read again from disk; those read last if that fails.
    pub fn credentials(&self) -> Arc<Credentials> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match read(&self.config) {
            Ok(creds) => *last = Arc::new(creds),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot reload the upstream authority; using the credentials read before"
            ),
        }
        last.clone()
    }
}

fn corrupt(path: &Path, what: impl fmt::Display) -> CaError {
    CaError::Corrupt(format!("upstream authority {}: {what}", path.display()))
}

/// All certificates (DER) of a PEM file, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let text = storage::read_string(path)?;
    let blocks = pem::parse_many(&text).map_err(|e| corrupt(path, format!("invalid PEM: {e}")))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(corrupt(path, "no CERTIFICATE PEM block"));
    }
    for der in &certs {
        X509Certificate::from_der(der).map_err(|e| corrupt(path, e))?;
    }
    Ok(certs)
}

/// Whether a certificate's issuer is its own subject (a root).
pub(super) fn is_self_issued(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.issuer().as_raw() == c.subject().as_raw())
}

fn read(config: &DiskUpstreamConfig) -> Result<Credentials, CaError> {
    let cert_path = &config.cert_file_path;
    let certs = read_certs(cert_path)?;
    let (_, cert) = X509Certificate::from_der(&certs[0]).map_err(|e| corrupt(cert_path, e))?;
    let signs_certs = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
        && cert
            .key_usage()
            .ok()
            .flatten()
            .is_none_or(|ku| ku.value.key_cert_sign());
    if !signs_certs {
        return Err(corrupt(
            cert_path,
            "the first certificate is not a CA (basicConstraints cA and keyCertSign)",
        ));
    }
    let not_after = cert.validity().not_after.timestamp();

    storage::warn_if_not_private(&config.key_file_path);
    let key_pem = Zeroizing::new(storage::read_string(&config.key_file_path)?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| {
        corrupt(
            &config.key_file_path,
            format!("not a PKCS#8 private key rcgen can sign with: {e}"),
        )
    })?;
    let key = SecretKey(key);
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(corrupt(
            &config.key_file_path,
            format!("the key does not match {}", cert_path.display()),
        ));
    }

    let (chain, roots) = match &config.bundle_file_path {
        Some(bundle) => (certs.clone(), read_certs(bundle)?),
        None if is_self_issued(&certs[0]) => (vec![], vec![certs[0].clone()]),
        None => {
            return Err(corrupt(
                cert_path,
                "the upstream certificate is not self-signed; give its roots in bundle_file_path",
            ));
        }
    };
    Ok(Credentials {
        cert: certs[0].clone(),
        chain,
        roots,
        not_after,
        key,
    })
}
