//! Error type for all cryptographic operations.
//!
//! Messages deliberately never contain key material or plaintext.

/// Convenience alias.
pub type Result<T> = std::result::Result<T, CryptoError>;

/// Everything that can go wrong in `nexus-crypto`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The operating system random number generator failed.
    #[error("operating system random number generator failed")]
    Rng,
    /// AES-GCM refused to encrypt (input too large).
    #[error("encryption failed")]
    Encrypt,
    /// Authentication failed: wrong key, wrong associated data, or tampered ciphertext.
    #[error("decryption failed: wrong key, wrong associated data, or tampered ciphertext")]
    Decrypt,
    /// Serialized sealed data is shorter than the minimum length.
    #[error("sealed data too short: {len} bytes, need at least {min}")]
    TooShort {
        /// Actual length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// Serialized sealed data has an unknown format version.
    #[error("unsupported sealed data format version {0:#04x}")]
    UnsupportedVersion(u8),
    /// A decrypted or supplied key has the wrong length.
    #[error("invalid key length: {len} bytes, expected {expected}")]
    InvalidKeyLength {
        /// Actual length.
        len: usize,
        /// Expected length.
        expected: usize,
    },
    /// Shamir threshold/share-count parameters are out of range.
    #[error(
        "invalid Shamir parameters: threshold {threshold}, shares {shares} (need 2 <= threshold <= shares <= 255)"
    )]
    InvalidShamirParams {
        /// Requested threshold.
        threshold: u8,
        /// Requested number of shares.
        shares: u8,
    },
    /// A shard has identifier 0 (which would reveal the secret).
    #[error("invalid shard identifier 0")]
    InvalidShardId,
    /// Two shards with the same identifier were supplied.
    #[error("duplicate shard identifier {0}")]
    DuplicateShard(u8),
    /// Fewer shards than the threshold were supplied.
    #[error("not enough shards: got {got}, need {need}")]
    NotEnoughShards {
        /// Shards supplied.
        got: usize,
        /// Threshold.
        need: u8,
    },
    /// The recombined key does not match the key-check value.
    #[error("recombined root key does not match the key-check value (wrong or corrupted shards)")]
    WrongShares,
}
