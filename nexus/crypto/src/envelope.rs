//! Envelope encryption: data keys wrapped under the root-derived KEK.

use crate::{CryptoError, Result};
use crate::{DataKey, KEY_LEN, Purpose, RootKey, Sealed, open, seal};

/// A [`DataKey`] sealed under the root-derived key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey(Sealed);

impl WrappedKey {
    /// Serializes using the [`Sealed`] byte format.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parses the [`Sealed`] byte format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Sealed::from_bytes(bytes).map(Self)
    }

    /// The underlying sealed value.
    pub fn sealed(&self) -> &Sealed {
        &self.0
    }
}

/// Wraps `data_key` under the KEK derived from `root`, binding it to the
/// record identified by `aad` (see [`crate::aad`]).
pub fn wrap(root: &RootKey, data_key: &DataKey, aad: &[u8]) -> Result<WrappedKey> {
    let kek = root.derive(Purpose::Kek);
    seal(&kek, aad, data_key.expose_secret()).map(WrappedKey)
}

/// Unwraps a data key previously produced by [`wrap`] with the same `aad`.
pub fn unwrap(root: &RootKey, wrapped: &WrappedKey, aad: &[u8]) -> Result<DataKey> {
    let kek = root.derive(Purpose::Kek);
    let bytes = open(&kek, aad, &wrapped.0)?;
    if bytes.len() != KEY_LEN {
        return Err(CryptoError::InvalidKeyLength {
            len: bytes.len(),
            expected: KEY_LEN,
        });
    }
    DataKey::try_from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aad;

    #[test]
    fn wrap_unwrap_round_trip() -> Result<()> {
        let root = RootKey::generate()?;
        let dk = DataKey::generate()?;
        let ad = aad("secrets", "db/password", 3);
        let wrapped = wrap(&root, &dk, &ad)?;
        let parsed = WrappedKey::from_bytes(&wrapped.to_bytes())?;
        assert_eq!(unwrap(&root, &parsed, &ad)?, dk);
        Ok(())
    }

    #[test]
    fn unwrap_rejects_other_record_or_root() -> Result<()> {
        let root = RootKey::generate()?;
        let dk = DataKey::generate()?;
        let wrapped = wrap(&root, &dk, &aad("secrets", "a", 1))?;
        assert_eq!(
            unwrap(&root, &wrapped, &aad("secrets", "b", 1)),
            Err(CryptoError::Decrypt)
        );
        let other = RootKey::generate()?;
        assert_eq!(
            unwrap(&other, &wrapped, &aad("secrets", "a", 1)),
            Err(CryptoError::Decrypt)
        );
        Ok(())
    }

    #[test]
    fn rotation_rewraps_same_data_key() -> Result<()> {
        let old = RootKey::generate()?;
        let new = RootKey::generate()?;
        let dk = DataKey::generate()?;
        let ad = aad("secrets", "a", 1);
        let payload = seal(&dk, &ad, b"secret value")?;
        let w_old = wrap(&old, &dk, &ad)?;
        let w_new = wrap(&new, &unwrap(&old, &w_old, &ad)?, &ad)?;
        let recovered = unwrap(&new, &w_new, &ad)?;
        assert_eq!(open(&recovered, &ad, &payload)?.as_slice(), b"secret value");
        Ok(())
    }
}
