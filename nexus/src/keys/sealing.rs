//! Envelope encryption of records: each record gets a fresh data key, the data key is stored
//! wrapped under the root-derived key-encryption key, and both seals carry associated data
//! naming the record's table, path and version, so a ciphertext moved to another row does
//! not open.

use nexus_api::model::{PutPolicyRequest, Values};
use nexus_crypto::{
    CryptoError, DataKey, RootKey, Sealed, WrappedKey, aad, open, seal, unwrap, wrap,
};
use zeroize::Zeroizing;

use crate::store::SealedRecord;

/// Associated-data table name of secret versions.
pub const SECRETS_TABLE: &str = "secret_versions";
/// Associated-data table name of policies.
pub const POLICIES_TABLE: &str = "policies";
/// Associated-data table name of the cipher service's key.
pub const CIPHER_TABLE: &str = "cipher_key";

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    /// Encryption or decryption failed (wrong key, moved or tampered record).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The decrypted record is not what was sealed.
    #[error("decrypted record is malformed")]
    Malformed,
}

fn seal_bytes(root: &RootKey, ad: &[u8], plaintext: &[u8]) -> Result<SealedRecord, CryptoError> {
    let data_key = DataKey::generate()?;
    let ciphertext = seal(&data_key, ad, plaintext)?.to_bytes();
    let wrapped_key = wrap(root, &data_key, ad)?.to_bytes();
    Ok(SealedRecord {
        wrapped_key,
        ciphertext,
    })
}

fn open_bytes(
    root: &RootKey,
    ad: &[u8],
    record: &SealedRecord,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let data_key = unwrap(root, &WrappedKey::from_bytes(&record.wrapped_key)?, ad)?;
    open(&data_key, ad, &Sealed::from_bytes(&record.ciphertext)?)
}

/// Seals one version of a secret.
pub fn seal_values(
    root: &RootKey,
    path: &str,
    version: u64,
    values: &Values,
) -> Result<SealedRecord, CryptoError> {
    let plaintext = Zeroizing::new(serde_json::to_vec(values).map_err(|_| CryptoError::Encrypt)?);
    seal_bytes(root, &aad(SECRETS_TABLE, path, version), &plaintext)
}

/// Opens one version of a secret.
pub fn open_values(
    root: &RootKey,
    path: &str,
    version: u64,
    record: &SealedRecord,
) -> Result<Values, SealingError> {
    let plaintext = open_bytes(root, &aad(SECRETS_TABLE, path, version), record)?;
    serde_json::from_slice(&plaintext).map_err(|_| SealingError::Malformed)
}

/// The sealed part of a policy: everything but its name.
#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyBody {
    spiffeid_pattern: String,
    path_pattern: String,
    permissions: Vec<String>,
}

/// Seals a policy's patterns and permissions (its name stays the row's plaintext key).
pub fn seal_policy(root: &RootKey, policy: &PutPolicyRequest) -> Result<SealedRecord, CryptoError> {
    let body = PolicyBody {
        spiffeid_pattern: policy.spiffe_id_pattern.clone(),
        path_pattern: policy.path_pattern.clone(),
        permissions: policy.permissions.clone(),
    };
    let plaintext = Zeroizing::new(serde_json::to_vec(&body).map_err(|_| CryptoError::Encrypt)?);
    seal_bytes(root, &aad(POLICIES_TABLE, &policy.name, 0), &plaintext)
}

/// Opens a policy sealed by [`seal_policy`].
pub fn open_policy(
    root: &RootKey,
    name: &str,
    record: &SealedRecord,
) -> Result<PutPolicyRequest, SealingError> {
    let plaintext = open_bytes(root, &aad(POLICIES_TABLE, name, 0), record)?;
    let body: PolicyBody =
        serde_json::from_slice(&plaintext).map_err(|_| SealingError::Malformed)?;
    Ok(PutPolicyRequest {
        name: name.to_owned(),
        spiffe_id_pattern: body.spiffeid_pattern,
        path_pattern: body.path_pattern,
        permissions: body.permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        [("password".to_owned(), "hunter2".to_owned())].into()
    }

    #[test]
    fn values_round_trip_and_stay_bound_to_their_row() -> Result<(), SealingError> {
        let root = RootKey::generate()?;
        let record = seal_values(&root, "db/a", 3, &values())?;
        assert!(
            !record.ciphertext.windows(7).any(|w| w == b"hunter2"),
            "plaintext visible in the ciphertext"
        );
        assert_eq!(open_values(&root, "db/a", 3, &record)?, values());
        for (path, version) in [("db/b", 3), ("db/a", 4)] {
            assert!(matches!(
                open_values(&root, path, version, &record),
                Err(SealingError::Crypto(CryptoError::Decrypt))
            ));
        }
        let other = RootKey::generate()?;
        assert!(open_values(&other, "db/a", 3, &record).is_err());
        Ok(())
    }

    #[test]
    fn tampering_is_detected() -> Result<(), SealingError> {
        let root = RootKey::generate()?;
        let mut record = seal_values(&root, "p", 1, &values())?;
        let last = record.ciphertext.len() - 1;
        record.ciphertext[last] ^= 1;
        assert!(open_values(&root, "p", 1, &record).is_err());
        Ok(())
    }

    #[test]
    fn policies_round_trip_under_their_name_only() -> Result<(), SealingError> {
        let root = RootKey::generate()?;
        let policy = PutPolicyRequest {
            name: "readers".into(),
            spiffe_id_pattern: "^spiffe://td/app$".into(),
            path_pattern: "^db/.*$".into(),
            permissions: vec!["read".into()],
        };
        let record = seal_policy(&root, &policy)?;
        assert_eq!(open_policy(&root, "readers", &record)?, policy);
        assert!(open_policy(&root, "writers", &record).is_err());
        Ok(())
    }
}
