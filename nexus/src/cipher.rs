//! Encryption as a service (SPIKE's `/v1/cipher/*`): AES-256-GCM under a key derived from the
//! root key for this purpose alone (HKDF label `spike-nexus/v1/cipher`). Stored data is
//! sealed under data keys wrapped by a different derived key (the KEK), so nothing Nexus
//! stores can be opened through this service, and nothing it returns is a storage ciphertext.

use nexus_crypto::{Purpose, RootKey, Sealed};
use zeroize::Zeroizing;

use crate::service::ServiceError;

/// Associated data of every cipher-service ciphertext.
const AAD: &[u8] = b"spike-nexus/cipher/v1";

/// Seals `plaintext`.
pub fn encrypt(root: &RootKey, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
    Ok(nexus_crypto::seal(
        &root.derive(Purpose::Cipher),
        AAD,
        plaintext,
    )?)
}

/// Opens what [`encrypt`] sealed; anything else (another Nexus's, a tampered one, a storage
/// record) is `Invalid`.
pub fn decrypt(root: &RootKey, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
    nexus_crypto::open(&root.derive(Purpose::Cipher), AAD, sealed).map_err(|_| {
        ServiceError::Invalid(
            "the ciphertext does not decrypt under this Nexus's cipher key (altered, truncated, or not from this Nexus's /v1/cipher/encrypt)".into(),
        )
    })
}

/// Parses the stream form `0x01 ‖ nonce(12) ‖ ciphertext`.
pub fn parse(bytes: &[u8]) -> Result<Sealed, ServiceError> {
    Sealed::from_bytes(bytes)
        .map_err(|e| ServiceError::Invalid(format!("malformed ciphertext: {e}")))
}
