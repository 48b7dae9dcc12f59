//! The disk key manager: each key a PKCS#8 PEM file (`<name>.pem`, mode 0600) in the server's
//! data directory, written and renamed atomically and durably (see `super::super::storage`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use zeroize::{Zeroize, Zeroizing};

use super::{CaKey, KeyManager, check_expected};
use crate::ca::{CaError, single_pem, storage};

/// Keys as files in one directory.
#[derive(Debug)]
pub struct DiskKeyManager {
    dir: PathBuf,
}

impl DiskKeyManager {
    /// Keys in `dir` (which the caller creates).
    pub fn new(dir: &Path) -> Self {
        DiskKeyManager {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
}

/// A P-256 key loaded from its file. ring keeps the key in its own memory; the PKCS#8 copy we
/// read is wiped as soon as ring has parsed it.
struct DiskKey {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl CaKey for DiskKey {
    fn public_point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| CaError::Crypto("ECDSA signing failed".into()))
    }
}

fn parse(pkcs8: &[u8], path: &Path) -> Result<DiskKey, CaError> {
    let rng = ring::rand::SystemRandom::new();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).map_err(|_| {
            CaError::Corrupt(format!(
                "{} is not a PKCS#8 ECDSA P-256 private key",
                path.display()
            ))
        })?;
    Ok(DiskKey { key, rng })
}

impl KeyManager for DiskKeyManager {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn generate(&self, name: &str) -> Result<Arc<dyn CaKey>, CaError> {
        let path = self.path(name);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| CaError::Crypto("cannot generate a P-256 key".into()))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let key = parse(&pkcs8, &path)?;
        let block = pem::Pem::new("PRIVATE KEY", pkcs8.to_vec());
        let text = Zeroizing::new(pem::encode(&block));
        block.into_contents().zeroize();
        storage::write_atomic(&path, text.as_bytes(), 0o600)?;
        Ok(Arc::new(key))
    }

    fn exists(&self, name: &str) -> Result<bool, CaError> {
        storage::exists(&self.path(name))
    }

    fn load(&self, name: &str, expected: Option<&[u8]>) -> Result<Arc<dyn CaKey>, CaError> {
        let path = self.path(name);
        storage::warn_if_not_private(&path);
        let text = Zeroizing::new(storage::read_string(&path)?);
        let pkcs8 = Zeroizing::new(single_pem(&text, "PRIVATE KEY", &path)?);
        let key = parse(&pkcs8, &path)?;
        check_expected(&path.display().to_string(), &key, expected)?;
        Ok(Arc::new(key))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), CaError> {
        storage::rename_durably(&self.path(from), &self.path(to))
    }

    fn remove(&self, name: &str) -> Result<(), CaError> {
        storage::remove_if_exists(&self.path(name))
    }
}
