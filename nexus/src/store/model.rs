//! The values the store takes and returns.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

/// Opaque sealed bytes for one record: a data key wrapped under the root key and the record
/// encrypted under that data key. `Debug` prints lengths only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// The record's data key, wrapped.
    pub wrapped_key: Vec<u8>,
    /// The record, encrypted.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRecord")
            .field("wrapped_key_len", &self.wrapped_key.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// The root key's public record: the key-check value and Shamir parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// Proof of the root key (an AEAD encryption of a marker under a derived key).
    pub key_check: Vec<u8>,
    /// Shares needed to rebuild the root key.
    pub threshold: u8,
    /// Shares handed out.
    pub shares: u8,
    /// When the root key was created (stored at millisecond precision).
    pub created_at: OffsetDateTime,
}

/// One put of a secret version.
#[derive(Clone, Copy, Debug)]
pub struct PutVersion<'a> {
    /// The secret's path.
    pub path: &'a str,
    /// Check-and-set: succeed only if the latest version is this one (0: the secret must
    /// have no version yet).
    pub cas: Option<u64>,
    /// Versions to keep, recorded when this put creates the secret (0 is taken as 1).
    pub max_versions: u32,
    /// Check-and-set is required of every write (Nexus's global `cas_required`): without
    /// `cas` the put fails with [`StoreError::CasRequired`](super::StoreError::CasRequired),
    /// as it does when the secret's own `cas_required` is set.
    pub cas_required: bool,
    /// The caller's SPIFFE ID.
    pub created_by: &'a str,
    /// The time of the put.
    pub now: OffsetDateTime,
    /// The key-check value of the root key the version is sealed under: the put fails with
    /// [`StoreError::KeyChanged`](super::StoreError::KeyChanged) unless the datastore still
    /// holds it (another replica rotated the key). `None` checks nothing.
    pub fence: Option<&'a [u8]>,
}

/// A metadata-only update of a secret (Vault's `metadata put`): each field given replaces
/// the stored one, each `None` keeps it. Creates the secret, without versions, if missing.
#[derive(Clone, Copy, Debug)]
pub struct MetadataUpdate<'a> {
    /// The secret's path.
    pub path: &'a str,
    /// Versions to keep (at least 1); older ones leave storage in the same transaction.
    pub max_versions: Option<u32>,
    /// Whether every write must carry a check-and-set version.
    pub cas_required: Option<bool>,
    /// Age after which versions expire (zero: never).
    pub delete_version_after: Option<Duration>,
    /// Replaces the whole custom metadata map.
    pub custom_metadata: Option<&'a BTreeMap<String, String>>,
    /// Used for defaults when the update creates the secret: its `max_versions`.
    pub default_max_versions: u32,
    /// The caller's SPIFFE ID (recorded as creator if the update creates the secret).
    pub created_by: &'a str,
    /// The time of the update.
    pub now: OffsetDateTime,
    /// The write fence, as for [`PutVersion::fence`].
    pub fence: Option<&'a [u8]>,
}

/// One stored version of a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    /// Its version number.
    pub version: u64,
    /// Its sealed values.
    pub sealed: SealedRecord,
}

/// Metadata of one stored version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMeta {
    /// Its version number.
    pub version: u64,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// When it was soft-deleted, if it is.
    pub deleted_at: Option<OffsetDateTime>,
    /// When it expires (unreadable from then on, then pruned), fixed when it was written
    /// from the secret's `delete_version_after` of that time; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
    /// SPIFFE ID of its writer.
    pub created_by: String,
}

/// Metadata of a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMeta {
    /// The secret's path.
    pub path: String,
    /// Highest non-deleted version (0: all deleted).
    pub current_version: u64,
    /// Lowest stored non-deleted version (0: none).
    pub oldest_version: u64,
    /// Highest version ever written; the next put writes this plus one.
    pub latest_version: u64,
    /// Versions kept.
    pub max_versions: u32,
    /// When the secret was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// SPIFFE ID of its creator.
    pub created_by: String,
    /// Free-form, non-secret labels (Vault's `custom_metadata`).
    pub custom_metadata: BTreeMap<String, String>,
    /// Whether every write must carry a check-and-set version.
    pub cas_required: bool,
    /// Age after which versions written from now on expire (zero: never). Each version's
    /// deadline is fixed when it is written ([`VersionMeta::expires_at`]); an expired version
    /// is unreadable at once and removed from storage by the periodic prune
    /// ([`Store::prune_expired`](super::Store::prune_expired)) or the secret's next write.
    pub delete_version_after: Duration,
    /// Stored versions (deleted ones included, pruned and destroyed ones not), ascending.
    pub versions: Vec<VersionMeta>,
}

/// A stored policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Its unique name.
    pub name: String,
    /// Its sealed body.
    pub sealed: SealedRecord,
    /// When it was first stored.
    pub created_at: OffsetDateTime,
    /// When it was last stored.
    pub updated_at: OffsetDateTime,
}
