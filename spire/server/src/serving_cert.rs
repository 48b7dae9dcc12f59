//! A Web PKI serving certificate read from PEM files, for the endpoints that face clients
//! outside SPIFFE: OIDC discovery and the bundle endpoint's `https_web` profile. As with
//! SPIRE's `serving_cert_file` and its `file_sync_interval`, the files are read again when
//! they change, so a renewal (certbot, cert-manager) needs no restart; a renewal that does not
//! load (half-written, key and certificate not matching) is logged and the previous
//! certificate stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a serving certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ServingCertError {
    #[error("serving certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("serving key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("serving certificate {cert} and key {key}: {message}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The certificate and key from two PEM files, kept current (see the module docs).
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Current>,
}

struct Current {
    key: Arc<CertifiedKey>,
    /// The files' modification times when `key` was read.
    stamp: Stamp,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Reads the chain in `cert_path` and the key in `key_path` (PEM), which must match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, ServingCertError> {
        let stamp = stamp(cert_path, key_path);
        let key = read(cert_path, key_path)?;
        Ok(Arc::new(ServingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Current { key, stamp }),
        }))
    }

    /// A TLS server config presenting the current certificate; no client certificate is asked
    /// for (the clients are anonymous), HTTP/2 and HTTP/1.1 offered.
    pub fn tls_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ServingCertError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Reads the files again if they changed since the last read: `Ok(true)` if a new
    /// certificate is in use, `Ok(false)` if nothing changed, the error (and the previous
    /// certificate kept) if the new files do not load.
    pub fn reload_if_changed(&self) -> Result<bool, ServingCertError> {
        let stamp = stamp(&self.cert_path, &self.key_path);
        if stamp == self.lock_read().stamp {
            return Ok(false);
        }
        let key = read(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Current { key, stamp };
        Ok(true)
    }

    /// Checks the files every `interval` and reloads them when they change, until
    /// `shutdown` resolves.
    pub async fn keep_current(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "serving certificate not reloaded; the previous one stays in use")
                }
            }
        }
    }

    fn lock_read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        // Replaced whole under the lock: never half-updated, so poisoning is ignored.
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lock_read().key.clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn read(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, ServingCertError> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServingCertError::Certificate {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ServingCertError::Certificate {
            path: cert_path.to_owned(),
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| ServingCertError::Key {
        path: key_path.to_owned(),
        // The parser's message names the PEM section, never the key's bytes.
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| ServingCertError::Pair {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    /// Writes a self-signed certificate for `name` and its key into `dir`; the certificate.
    fn write_pair(dir: &Path, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
        cert.der().to_vec()
    }

    fn served(cert: &ServingCert) -> Vec<u8> {
        cert.lock_read().key.cert[0].to_vec()
    }

    /// Moves both files' modification times, as a renewal written a second later would.
    fn touch_later(dir: &Path) {
        for file in ["cert.pem", "key.pem"] {
            let f = std::fs::File::options()
                .write(true)
                .open(dir.join(file))
                .expect("open");
            f.set_modified(SystemTime::now() + Duration::from_secs(5))
                .expect("mtime");
        }
    }

    #[test]
    fn a_renewed_certificate_is_served_and_a_broken_renewal_keeps_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = write_pair(dir.path(), "localhost");
        let cert = ServingCert::load(&dir.path().join("cert.pem"), &dir.path().join("key.pem"))
            .expect("load");
        assert_eq!(served(&cert), first);
        assert!(!cert.reload_if_changed().expect("unchanged"));

        let second = write_pair(dir.path(), "localhost");
        touch_later(dir.path());
        assert!(cert.reload_if_changed().expect("reloaded"));
        assert_eq!(served(&cert), second);

        // A key that belongs to another certificate: refused, the second stays.
        let other = KeyPair::generate().expect("key");
        std::fs::write(dir.path().join("key.pem"), other.serialize_pem()).expect("key");
        touch_later(dir.path());
        let error = cert.reload_if_changed().expect_err("mismatched pair");
        assert!(matches!(error, ServingCertError::Pair { .. }), "{error}");
        assert_eq!(served(&cert), second);
    }

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let error = ServingCert::load(&cert, &key).expect_err("no files");
        assert!(error.to_string().contains("cert.pem"), "{error}");
        std::fs::write(&cert, "").expect("empty");
        let error = ServingCert::load(&cert, &key).expect_err("empty file");
        assert!(error.to_string().contains("no certificate"), "{error}");
    }
}
