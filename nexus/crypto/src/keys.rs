//! Key newtypes and HKDF-SHA256 derivation.

use hkdf::Hkdf;
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aead::private::KeyMaterial;
use crate::{AeadKey, CryptoError, Result};

/// Length in bytes of every symmetric key in this crate.
pub const KEY_LEN: usize = 32;

/// HKDF salt; fixed so derivation is deterministic for a given root key.
const HKDF_SALT: &[u8] = b"spike-nexus/hkdf-salt/v1";

/// Every purpose a root-derived key may serve. All HKDF labels live here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Key-encryption key: wraps per-record data keys.
    Kek,
    /// Key used to seal the [`crate::KeyCheck`] marker.
    KeyCheck,
    /// Encryption-as-a-service key, separate from storage keys.
    Cipher,
    /// Seed for deterministic Shamir polynomial coefficients.
    ShamirSeed,
}

impl Purpose {
    /// All purposes (useful for tests and audits).
    pub const ALL: [Purpose; 4] = [
        Purpose::Kek,
        Purpose::KeyCheck,
        Purpose::Cipher,
        Purpose::ShamirSeed,
    ];

    /// The HKDF `info` label for this purpose.
    pub const fn label(self) -> &'static [u8] {
        match self {
            Purpose::Kek => b"spike-nexus/v1/kek",
            Purpose::KeyCheck => b"spike-nexus/v1/key-check",
            Purpose::Cipher => b"spike-nexus/v1/cipher",
            Purpose::ShamirSeed => b"spike-nexus/v1/shamir-seed",
        }
    }
}

fn random_key() -> Result<[u8; KEY_LEN]> {
    let mut bytes = [0u8; KEY_LEN];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| CryptoError::Rng)?;
    Ok(bytes)
}

macro_rules! secret_key_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Builds a key from a slice, checking its length.
            pub fn try_from_slice(bytes: &[u8]) -> Result<Self> {
                let arr: [u8; KEY_LEN] =
                    bytes.try_into().map_err(|_| CryptoError::InvalidKeyLength {
                        len: bytes.len(),
                        expected: KEY_LEN,
                    })?;
                Ok(Self(arr))
            }

            /// Exposes the raw key bytes (e.g. to persist or transmit them).
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_key_type!(
    /// The 32-byte root key. Never used directly for encryption.
    RootKey
);
secret_key_type!(
    /// A random per-record data-encryption key.
    DataKey
);
secret_key_type!(
    /// A key derived from the root key for one [`Purpose`].
    DerivedKey
);

impl RootKey {
    /// Generates a fresh root key from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        random_key().map(Self)
    }

    /// Derives the key for `purpose` with HKDF-SHA256.
    pub fn derive(&self, purpose: Purpose) -> DerivedKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut out = [0u8; KEY_LEN];
        hk.expand(purpose.label(), &mut out)
            .expect("HKDF-SHA256 can always expand 32 bytes (limit is 255*32)");
        DerivedKey(out)
    }
}

impl DataKey {
    /// Generates a fresh data key from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        random_key().map(Self)
    }
}

impl KeyMaterial for DataKey {
    fn material(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}
impl AeadKey for DataKey {}

impl KeyMaterial for DerivedKey {
    fn material(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}
impl AeadKey for DerivedKey {}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_root() -> RootKey {
        RootKey::from_bytes([7u8; KEY_LEN])
    }

    #[test]
    fn debug_is_redacted() {
        let root = RootKey::from_bytes([0xAB; KEY_LEN]);
        let data = DataKey::from_bytes([0xCD; KEY_LEN]);
        let derived = root.derive(Purpose::Kek);
        for s in [
            format!("{root:?}"),
            format!("{data:?}"),
            format!("{derived:?}"),
        ] {
            assert!(s.contains("[REDACTED]"), "{s}");
            assert!(
                !s.contains("171") && !s.contains("ab") && !s.contains("AB"),
                "{s}"
            );
            assert!(
                !s.contains("205") && !s.contains("cd") && !s.contains("CD"),
                "{s}"
            );
        }
    }

    #[test]
    fn cipher_key_differs_from_kek() {
        let root = fixed_root();
        assert_ne!(root.derive(Purpose::Cipher), root.derive(Purpose::Kek));
    }

    #[test]
    fn all_purposes_distinct_and_deterministic() {
        let root = fixed_root();
        for (i, a) in Purpose::ALL.iter().enumerate() {
            assert_eq!(root.derive(*a), root.derive(*a));
            for b in &Purpose::ALL[i + 1..] {
                assert_ne!(a.label(), b.label());
                assert_ne!(root.derive(*a), root.derive(*b));
            }
        }
    }

    #[test]
    fn different_roots_give_different_derived_keys() {
        let other = RootKey::from_bytes([8u8; KEY_LEN]);
        assert_ne!(
            fixed_root().derive(Purpose::Kek),
            other.derive(Purpose::Kek)
        );
    }

    #[test]
    fn generate_is_random() -> Result<()> {
        assert_ne!(RootKey::generate()?, RootKey::generate()?);
        assert_ne!(DataKey::generate()?, DataKey::generate()?);
        Ok(())
    }

    #[test]
    fn try_from_slice_checks_length() {
        assert_eq!(
            DataKey::try_from_slice(&[0u8; 31]).err(),
            Some(CryptoError::InvalidKeyLength {
                len: 31,
                expected: 32
            })
        );
        assert!(DataKey::try_from_slice(&[0u8; 32]).is_ok());
    }
}
