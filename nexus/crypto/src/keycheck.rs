//! Key-check value: proves a candidate root key is the right one.

use subtle::ConstantTimeEq;

use crate::{Purpose, Result, RootKey, Sealed, open, seal};

/// Fixed plaintext sealed by the key-check value.
const MARKER: &[u8] = b"spike-nexus key-check marker v1";
/// Associated data for the key-check seal.
const AAD: &[u8] = b"spike-nexus/key-check";

/// AEAD seal of a fixed marker under the `key-check` derived key. Not secret;
/// it is stored next to the encrypted data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCheck(Sealed);

impl KeyCheck {
    /// Computes a key-check value for `root`.
    pub fn compute(root: &RootKey) -> Result<Self> {
        seal(&root.derive(Purpose::KeyCheck), AAD, MARKER).map(Self)
    }

    /// Returns `true` iff `root` is the key this value was computed for.
    pub fn verify(&self, root: &RootKey) -> bool {
        match open(&root.derive(Purpose::KeyCheck), AAD, &self.0) {
            Ok(pt) => pt.as_slice().ct_eq(MARKER).into(),
            Err(_) => false,
        }
    }

    /// Serializes using the [`Sealed`] byte format.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parses the [`Sealed`] byte format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Sealed::from_bytes(bytes).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_right_key_rejects_wrong() -> Result<()> {
        let root = RootKey::generate()?;
        let kc = KeyCheck::compute(&root)?;
        assert!(kc.verify(&root));
        assert!(!kc.verify(&RootKey::generate()?));
        Ok(())
    }

    #[test]
    fn bytes_round_trip() -> Result<()> {
        let root = RootKey::generate()?;
        let kc = KeyCheck::from_bytes(&KeyCheck::compute(&root)?.to_bytes())?;
        assert!(kc.verify(&root));
        Ok(())
    }

    #[test]
    fn tampered_check_fails() -> Result<()> {
        let root = RootKey::generate()?;
        let mut bytes = KeyCheck::compute(&root)?.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(!KeyCheck::from_bytes(&bytes)?.verify(&root));
        Ok(())
    }
}
