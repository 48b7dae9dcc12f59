//! Encryption as a service (SPIKE's `/v1/cipher/*`): AES-256-GCM under a key of its own, a
//! random key made on first use and stored wrapped under the root key's KEK like any data key
//! (so a root key rotation re-wraps it and earlier ciphertexts stay decryptable). It is never
//! a key that seals stored records, so nothing Nexus stores can be opened through this
//! service, and nothing it returns is a storage ciphertext.

use nexus_crypto::{CryptoError, DataKey, Sealed, WrappedKey, aad, unwrap, wrap};
use policies::{Permission, SYSTEM_CIPHER_EXEC_PATH};
use zeroize::Zeroizing;

use crate::authz::Grant;
use crate::error::ServiceError;
use crate::keys::sealing::CIPHER_TABLE;
use crate::service::Nexus;

/// Why a ciphertext given to the service is refused.
#[derive(Debug, thiserror::Error)]
pub enum CiphertextError {
    /// It does not open under this Nexus's cipher key.
    #[error(
        "the ciphertext does not decrypt under this Nexus's cipher key (altered, truncated, or not from this Nexus's /v1/cipher/encrypt)"
    )]
    DoesNotDecrypt,
    /// It is not in the stream form at all.
    #[error("malformed ciphertext: {0}")]
    Malformed(CryptoError),
}

/// Associated data of every cipher-service ciphertext.
const AAD: &[u8] = b"spike-nexus/cipher/v1";

/// The cipher key, for a caller granted `execute` on the cipher's system path: cached after
/// the first call, else unwrapped from the datastore, else created (by this Nexus or, on a
/// shared database, whichever replica stores it first).
pub async fn key(nexus: &Nexus, grant: &Grant) -> Result<std::sync::Arc<DataKey>, ServiceError> {
    grant.for_path(Permission::Execute, SYSTEM_CIPHER_EXEC_PATH)?;
    if let Some(key) = nexus.cipher_key.load_full() {
        return Ok(key);
    }
    // Held as a writer: the key is wrapped, and maybe stored, under the root key in force.
    let permit = nexus.keys.write().await.map_err(ServiceError::NotReady)?;
    let root = permit.root();
    let ad = aad(CIPHER_TABLE, "", 0);
    let wrapped = match nexus.store.cipher_key().await? {
        Some(wrapped) => wrapped,
        None => {
            let fresh = wrap(root, &DataKey::generate()?, &ad)?.to_bytes();
            nexus
                .store
                .create_cipher_key(&fresh, nexus.clock.now(), permit.fence())
                .await
                .map_err(|e| nexus.write_failed(e))?
        }
    };
    let key = WrappedKey::from_bytes(&wrapped)
        .and_then(|wrapped| unwrap(root, &wrapped, &ad))
        .map_err(|error| {
            tracing::error!(%error, "the cipher key does not unwrap under the root key");
            ServiceError::Internal
        })?;
    let key = std::sync::Arc::new(key);
    nexus.cipher_key.store(Some(key.clone()));
    Ok(key)
}

/// Seals `plaintext`.
pub fn encrypt(key: &DataKey, plaintext: &[u8]) -> Result<Sealed, ServiceError> {
    Ok(nexus_crypto::seal(key, AAD, plaintext)?)
}

/// Opens what [`encrypt`] sealed; anything else (another Nexus's, a tampered one, a storage
/// record) is `Invalid`.
pub fn decrypt(key: &DataKey, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, ServiceError> {
    nexus_crypto::open(key, AAD, sealed)
        .map_err(|_| ServiceError::invalid(CiphertextError::DoesNotDecrypt))
}

/// Parses the stream form `0x01 ‖ nonce(12) ‖ ciphertext`.
pub fn parse(bytes: &[u8]) -> Result<Sealed, ServiceError> {
    Sealed::from_bytes(bytes).map_err(|e| ServiceError::invalid(CiphertextError::Malformed(e)))
}
