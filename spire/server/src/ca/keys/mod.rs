//! Where the server's signing keys live: a small [`KeyManager`] trait with two implementations,
//! chosen by configuration ([`KeyManagerConfig`]), as SPIRE's KeyManager plugins:
//!
//! - [`disk::DiskKeyManager`] keeps each key as a PKCS#8 PEM file (0600) in the data directory,
//!   the way the server always has;
//! - [`pkcs11::Pkcs11KeyManager`] generates each key inside a PKCS#11 token (an HSM, or
//!   SoftHSM2) as a sensitive, non-extractable object and signs there; the private key never
//!   leaves the token, and is found again after a restart by its label.
//!
//! A key is known by a *name* ("ca-key", "ca-next-key", "jwt-key", "jwt-next-key"): the disk
//! manager stores it in `<name>.pem`, the PKCS#11 manager labels the token objects
//! `<prefix><name>`. The CA rotation (`super::manager`) moves a prepared key into the current
//! slot with [`KeyManager::rename`], which replaces the destination; a crash in the middle of
//! that is repaired on the next start because [`KeyManager::load`] is told the public key it
//! expects (from the certificate or the JWT key's metadata) and picks the key that matches.
//!
//! Every key is ECDSA P-256 and every signature ECDSA over SHA-256, as the CA certificates and
//! JWT-SVIDs (ES256) need.

pub mod disk;
pub mod pkcs11;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::CaError;

/// Length of an uncompressed SEC1 P-256 point (`04 || x || y`).
pub const P256_POINT_LEN: usize = 65;

/// A private key held by a [`KeyManager`]: it can sign, and tell its public key, never more.
pub trait CaKey: Send + Sync {
    /// The public key as an uncompressed SEC1 point ([`P256_POINT_LEN`] bytes).
    fn public_point(&self) -> &[u8];

    /// ECDSA P-256 over SHA-256 of `message`: the 64-byte `r || s` form (as JWS ES256 wants;
    /// [`der_signature`] turns it into the DER form X.509 wants).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError>;
}

/// Stores, finds and signs with the server's private keys.
pub trait KeyManager: Send + Sync + fmt::Debug {
    /// For logs and errors: "disk", "pkcs11".
    fn kind(&self) -> &'static str;

    /// Creates a new P-256 key under `name`, replacing any key of that name.
    fn generate(&self, name: &str) -> Result<Arc<dyn CaKey>, CaError>;

    /// Whether a key of that name exists.
    fn exists(&self, name: &str) -> Result<bool, CaError>;

    /// The key stored under `name`. With `expected` (an uncompressed point), only a key with
    /// that public key will do; a missing or different key is [`CaError::Corrupt`].
    fn load(&self, name: &str, expected: Option<&[u8]>) -> Result<Arc<dyn CaKey>, CaError>;

    /// Moves the key `from` to `to`, replacing any key of that name. Durable when it returns.
    fn rename(&self, from: &str, to: &str) -> Result<(), CaError>;

    /// Deletes the key `name` if it exists.
    fn remove(&self, name: &str) -> Result<(), CaError>;
}

/// Which key manager the server uses (`[server.key_manager.*]`).
#[derive(Debug, Clone, Default)]
pub enum KeyManagerConfig {
    /// PKCS#8 files in the data directory (the default).
    #[default]
    Disk,
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

/// `[server.key_manager.pkcs11]`.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module_path: PathBuf,
    /// The label of the token that holds the keys.
    pub token_label: String,
    /// Where the user PIN comes from; the PIN itself is never part of the configuration.
    pub pin: PinSource,
    /// Prepended to each key name to form the object label, so several servers (or trust
    /// domains) can share a token.
    pub key_label_prefix: String,
}

/// Where to read the token's user PIN.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// An environment variable (by name).
    Env(String),
    /// A file (its first line).
    File(PathBuf),
}

/// Opens the configured key manager. `data_dir` is where the disk manager keeps its keys.
pub fn open(
    config: &KeyManagerConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn KeyManager>, CaError> {
    Ok(match config {
        KeyManagerConfig::Disk => Arc::new(disk::DiskKeyManager::new(data_dir)),
        KeyManagerConfig::Pkcs11(config) => Arc::new(pkcs11::Pkcs11KeyManager::open(config)?),
    })
}

/// Checks a loaded key against the public key the caller expects.
pub(crate) fn check_expected(
    name: &str,
    key: &dyn CaKey,
    expected: Option<&[u8]>,
) -> Result<(), CaError> {
    match expected {
        Some(point) if point != key.public_point() => Err(CaError::Corrupt(format!(
            "the private key {name} does not match its certificate or metadata"
        ))),
        _ => Ok(()),
    }
}

/// A [`CaKey`] as rcgen's signer, so rcgen builds certificates with a key it cannot see.
pub(crate) struct RcgenKey<'a>(pub &'a dyn CaKey);

impl PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_point()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for RcgenKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let raw = self.0.sign(msg).map_err(|e| {
            tracing::error!(error = %e, "the key manager failed to sign");
            rcgen::Error::RemoteKeyError
        })?;
        der_signature(&raw).ok_or(rcgen::Error::RemoteKeyError)
    }
}

/// Turns a 64-byte ECDSA P-256 `r || s` signature into the DER `ECDSA-Sig-Value` (RFC 3279
/// 2.2.3) that X.509 certificates carry. Written here because PKCS#11 tokens only return the
/// raw form and no crate in our tree converts it without pulling in a second ECDSA stack.
pub fn der_signature(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    let (r, s) = (der_uint(r), der_uint(s));
    let body_len = r.len() + s.len();
    // Two integers of at most 35 bytes each: the length always fits the short form.
    let mut out = Vec::with_capacity(2 + body_len);
    out.push(0x30);
    out.push(u8::try_from(body_len).ok()?);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// A DER INTEGER holding the unsigned big-endian `bytes`: leading zeros dropped, one zero
/// prepended when the top bit is set (so it stays positive).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let digits = &bytes[start..];
    let pad = digits[0] & 0x80 != 0;
    let len = digits.len() + usize::from(pad);
    let mut out = Vec::with_capacity(2 + len);
    out.push(0x02);
    out.push(len as u8);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signature_verifies_with_ring() {
        use ring::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
            UnparsedPublicKey,
        };
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref());
        // Enough signatures that some have r or s with the top bit set or a leading zero.
        for i in 0..64u8 {
            let raw = key.sign(&rng, &[i]).expect("sign");
            let der = der_signature(raw.as_ref()).expect("64 bytes");
            public.verify(&[i], &der).expect("DER signature verifies");
        }
        assert!(der_signature(&[0; 63]).is_none());
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = der_signature(&raw).expect("der");
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 1, 1]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
    }
}
