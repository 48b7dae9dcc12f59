//! AES-256-GCM sealing with random nonces and a versioned byte format.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::{CryptoError, Result};

/// Length of an AES-GCM nonce in bytes (96 bits).
pub const NONCE_LEN: usize = 12;

/// Current version byte of the serialized [`Sealed`] format.
pub const SEALED_FORMAT_VERSION: u8 = 0x01;

/// AES-GCM authentication tag length.
const TAG_LEN: usize = 16;

pub(crate) mod private {
    /// Access to raw key bytes; not nameable outside the crate.
    pub trait KeyMaterial {
        fn material(&self) -> &[u8; crate::KEY_LEN];
    }
}

/// Keys that may be used with [`seal`] and [`open`]: [`crate::DataKey`] and
/// [`crate::DerivedKey`]. Sealed; the root key is deliberately excluded.
pub trait AeadKey: private::KeyMaterial {}

/// An AEAD ciphertext together with its nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Random 96-bit nonce used for this ciphertext.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext including the 16-byte authentication tag.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// Minimum serialized length: version + nonce + tag.
    pub const MIN_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

    /// Serializes as `version (0x01) ‖ nonce ‖ ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + self.ciphertext.len());
        out.push(SEALED_FORMAT_VERSION);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the format produced by [`Sealed::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (&version, rest) = bytes.split_first().ok_or(CryptoError::TooShort {
            len: 0,
            min: Self::MIN_LEN,
        })?;
        if version != SEALED_FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        if bytes.len() < Self::MIN_LEN {
            return Err(CryptoError::TooShort {
                len: bytes.len(),
                min: Self::MIN_LEN,
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .expect("split_at(NONCE_LEN) yields exactly NONCE_LEN bytes");
        Ok(Self {
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn cipher<K: AeadKey + ?Sized>(key: &K) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.material()))
}

/// Encrypts `plaintext` under `key`, authenticating `aad`, with a fresh
/// random nonce from the OS CSPRNG.
pub fn seal<K: AeadKey + ?Sized>(key: &K, aad: &[u8], plaintext: &[u8]) -> Result<Sealed> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| CryptoError::Rng)?;
    let ciphertext = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(Sealed { nonce, ciphertext })
}

/// Decrypts and authenticates `sealed` under `key` with associated data `aad`.
pub fn open<K: AeadKey + ?Sized>(
    key: &K,
    aad: &[u8],
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>> {
    cipher(key)
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

/// Builds associated data binding a ciphertext to `(table, path, version)`.
///
/// Encoding: `"nexus-aad-v1" ‖ u64be(len(table)) ‖ table ‖ u64be(len(path)) ‖
/// path ‖ u64be(version)`. Length prefixes make it injective, so
/// `("a", "bc", 1)` and `("ab", "c", 1)` differ.
pub fn aad(table: &str, path: &str, version: u64) -> Vec<u8> {
    const DOMAIN: &[u8] = b"nexus-aad-v1";
    let mut out = Vec::with_capacity(DOMAIN.len() + 24 + table.len() + path.len());
    out.extend_from_slice(DOMAIN);
    for field in [table.as_bytes(), path.as_bytes()] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&version.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, KEY_LEN};

    fn key() -> DataKey {
        DataKey::from_bytes([0x42; KEY_LEN])
    }

    #[test]
    fn round_trip() -> Result<()> {
        let s = seal(&key(), b"ad", b"hello world")?;
        assert_eq!(open(&key(), b"ad", &s)?.as_slice(), b"hello world");
        Ok(())
    }

    #[test]
    fn empty_plaintext_round_trip() -> Result<()> {
        let s = seal(&key(), b"", b"")?;
        assert!(open(&key(), b"", &s)?.is_empty());
        Ok(())
    }

    #[test]
    fn aad_mismatch_fails() -> Result<()> {
        let s = seal(&key(), &aad("secrets", "a/b", 1), b"x")?;
        assert_eq!(
            open(&key(), &aad("secrets", "a/b", 2), &s),
            Err(CryptoError::Decrypt)
        );
        Ok(())
    }

    #[test]
    fn wrong_key_fails() -> Result<()> {
        let s = seal(&key(), b"ad", b"x")?;
        let other = DataKey::from_bytes([0x43; KEY_LEN]);
        assert_eq!(open(&other, b"ad", &s), Err(CryptoError::Decrypt));
        Ok(())
    }

    #[test]
    fn tampered_ciphertext_fails() -> Result<()> {
        let s = seal(&key(), b"ad", b"some plaintext")?;
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 0x01;
            assert_eq!(open(&key(), b"ad", &t), Err(CryptoError::Decrypt));
        }
        let mut t = s.clone();
        t.nonce[0] ^= 0x80;
        assert_eq!(open(&key(), b"ad", &t), Err(CryptoError::Decrypt));
        let mut t = s;
        t.ciphertext.pop();
        assert_eq!(open(&key(), b"ad", &t), Err(CryptoError::Decrypt));
        Ok(())
    }

    #[test]
    fn nonces_differ() -> Result<()> {
        let a = seal(&key(), b"ad", b"same")?;
        let b = seal(&key(), b"ad", b"same")?;
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        Ok(())
    }

    #[test]
    fn byte_format_round_trip() -> Result<()> {
        let s = seal(&key(), b"ad", b"payload")?;
        let bytes = s.to_bytes();
        assert_eq!(bytes[0], SEALED_FORMAT_VERSION);
        assert_eq!(&bytes[1..13], &s.nonce);
        assert_eq!(bytes.len(), 1 + NONCE_LEN + 7 + 16);
        let parsed = Sealed::from_bytes(&bytes)?;
        assert_eq!(parsed, s);
        assert_eq!(open(&key(), b"ad", &parsed)?.as_slice(), b"payload");
        Ok(())
    }

    #[test]
    fn byte_format_rejects_bad_version() -> Result<()> {
        let mut bytes = seal(&key(), b"ad", b"payload")?.to_bytes();
        bytes[0] = 0x02;
        assert_eq!(
            Sealed::from_bytes(&bytes),
            Err(CryptoError::UnsupportedVersion(0x02))
        );
        Ok(())
    }

    #[test]
    fn byte_format_rejects_short_input() {
        assert_eq!(
            Sealed::from_bytes(&[]),
            Err(CryptoError::TooShort { len: 0, min: 29 })
        );
        let short = [SEALED_FORMAT_VERSION; Sealed::MIN_LEN - 1];
        assert_eq!(
            Sealed::from_bytes(&short),
            Err(CryptoError::TooShort { len: 28, min: 29 })
        );
        assert!(Sealed::from_bytes(&[SEALED_FORMAT_VERSION; Sealed::MIN_LEN]).is_ok());
    }

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(aad("a", "bc", 1), aad("ab", "c", 1));
        assert_ne!(aad("", "abc", 1), aad("abc", "", 1));
        assert_ne!(aad("t", "p", 1), aad("t", "p", 2));
        assert_eq!(aad("t", "p", 1), aad("t", "p", 1));
    }

    #[test]
    fn error_messages_do_not_leak() -> Result<()> {
        let s = seal(&key(), b"ad", b"TOPSECRET")?;
        let err = open(&key(), b"other", &s).err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| !m.contains("TOPSECRET") && !m.contains("42")));
        Ok(())
    }
}
