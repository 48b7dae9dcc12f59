//! Request and response bodies. Field names are SPIKE's (camelCase); fields SPIKE lacks are
//! optional on input and additive on output, so either side may be a SPIKE implementation.
//!
//! Secret values appear only in [`Values`]; every type holding them prints `[REDACTED]` in
//! its `Debug` output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// One version of a secret: string keys to string values, read and changed as the map it
/// derefs to. Every key and value is zeroized when the map is dropped, and `Debug` prints
/// the keys only. (Copies the map's own rebalancing or a caller's `clone` leaves are the
/// caller's to drop; the wire buffers a value passed through are not ours to wipe.)
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    /// An empty version.
    pub fn new() -> Values {
        Values::default()
    }
}

impl std::ops::Deref for Values {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Values {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Values {
    fn drop(&mut self) {
        for (mut key, mut value) in std::mem::take(&mut self.0) {
            zeroize::Zeroize::zeroize(&mut key);
            zeroize::Zeroize::zeroize(&mut value);
        }
    }
}

impl From<BTreeMap<String, String>> for Values {
    fn from(map: BTreeMap<String, String>) -> Values {
        Values(map)
    }
}

impl<const N: usize> From<[(String, String); N]> for Values {
    fn from(pairs: [(String, String); N]) -> Values {
        Values(pairs.into())
    }
}

impl FromIterator<(String, String)> for Values {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Values {
        Values(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Values {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[REDACTED]")))
            .finish()
    }
}

/// Debug for a map of secret values: keys only.
struct RedactedValues<'a>(&'a Values);

impl std::fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// `POST /v1/store/secrets`: writes a new version.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutSecretRequest {
    /// Secret path, e.g. `db/password`.
    pub path: String,
    /// The whole new version.
    pub values: Values,
    /// Check-and-set: the write succeeds only if the current version equals this (0: the
    /// secret must not exist yet). Not in SPIKE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
}

impl std::fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecretRequest")
            .field("path", &self.path)
            .field("values", &RedactedValues(&self.values))
            .field("cas", &self.cas)
            .finish()
    }
}

/// Answer to a put: the version written (SPIKE answers `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutSecretResponse {
    /// The new version's number.
    #[serde(default)]
    pub version: u64,
}

/// `?action=get` on secrets and on metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetSecretRequest {
    /// Secret path.
    pub path: String,
    /// Version to read; 0 is the current one.
    #[serde(default)]
    pub version: u64,
}

/// A secret version's data.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetSecretResponse {
    /// The values.
    pub data: Values,
    /// Which version this is (not in SPIKE).
    #[serde(default)]
    pub version: u64,
}

impl std::fmt::Debug for GetSecretResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetSecretResponse")
            .field("data", &RedactedValues(&self.data))
            .field("version", &self.version)
            .finish()
    }
}

/// `?action=delete|undelete|destroy`: versions of one secret.
///
/// For delete and undelete an empty list means the current version (0 also names it), as in
/// SPIKE. For destroy an empty list destroys the whole secret: every version and its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionsRequest {
    /// Secret path.
    pub path: String,
    /// Version numbers.
    #[serde(default)]
    pub versions: Vec<u64>,
}

/// An empty body: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `?action=list` on secrets. SPIKE sends `{}`: every path the caller may read, in one
/// answer. With `prefix`, only paths that start with it; with `limit`, at most that many,
/// and `nextCursor` in the answer says where the next page starts (not in SPIKE).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSecretsRequest {
    /// Only paths starting with this (byte-wise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Page size, 1 to 1000; absent: every path in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page: only paths after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `?action=list` on secrets: the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSecretsResponse {
    /// Sorted paths the caller may read.
    pub keys: Vec<String>,
    /// Set when the page is full: pass it as `cursor` for the next page (which may be
    /// empty). Not in SPIKE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/store/secrets?action=patch`: a new version made of the current one with
/// `values` merged in (keys given replace or add, others are kept), as Vault's patch. Not in
/// SPIKE.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSecretRequest {
    /// Secret path; the secret must have a current version.
    pub path: String,
    /// Keys to set.
    pub values: Values,
    /// Check-and-set: patch only if the latest version is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
}

impl std::fmt::Debug for PatchSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchSecretRequest")
            .field("path", &self.path)
            .field("values", &RedactedValues(&self.values))
            .field("cas", &self.cas)
            .finish()
    }
}

/// A duration as Vault's API takes it: a string such as `"1h30m"` or `"90s"`, or a number
/// of seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    /// Whole seconds.
    Seconds(i64),
    /// Text, e.g. `1h`, `30m`, `1h 30m`, `0s`.
    Text(String),
}

/// `POST /v1/store/secrets/metadata` (no action): a metadata-only update, as Vault's
/// `metadata put`. Each field given replaces the stored one; absent fields are kept. Creates
/// the secret without versions if it does not exist. Not in SPIKE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutMetadataRequest {
    /// Secret path.
    pub path: String,
    /// Versions to keep, 0 (Nexus's default) to 1000000.
    #[serde(
        default,
        alias = "max_versions",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_versions: Option<i64>,
    /// Whether every write must carry `cas`.
    #[serde(
        default,
        alias = "cas_required",
        skip_serializing_if = "Option::is_none"
    )]
    pub cas_required: Option<bool>,
    /// Versions older than this are unreadable, and later removed; `0s` never.
    #[serde(
        default,
        alias = "delete_version_after",
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_version_after: Option<DurationValue>,
    /// Free-form labels, not secret: at most 64 keys of up to 128 bytes, values of up to
    /// 512 bytes. Replaces the whole map.
    #[serde(
        default,
        alias = "custom_metadata",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// `POST /v1/store/secrets/metadata?action=delete`: the secret, every version and its
/// metadata, for good (as `?action=destroy` on secrets without versions). Not in SPIKE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretPathRequest {
    /// Secret path.
    pub path: String,
}

/// Metadata of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionMetadata {
    /// Version number.
    pub version: u64,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_time: OffsetDateTime,
    /// When it was soft-deleted, or expired under `deleteVersionAfter`, if it is.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub deleted_time: Option<OffsetDateTime>,
    /// Vault's `deletion_time`: when the version became or becomes unreadable, past or
    /// future: its soft delete, or the deadline fixed when it was written from the secret's
    /// `deleteVersionAfter` of that time (whichever is earlier); absent if neither (not in
    /// SPIKE).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        alias = "deletion_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_time: Option<OffsetDateTime>,
    /// SPIFFE ID of the writer (not in SPIKE).
    #[serde(default)]
    pub created_by: String,
}

/// Metadata of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMetadata {
    /// Highest version not deleted; 0 when every version is deleted.
    pub current_version: u64,
    /// Lowest version still stored.
    pub oldest_version: u64,
    /// When the secret was first written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_time: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_time: OffsetDateTime,
    /// How many versions are kept.
    pub max_versions: u32,
    /// SPIFFE ID that first wrote it (not in SPIKE).
    #[serde(default)]
    pub created_by: String,
    /// Free-form labels (Vault's `custom_metadata`; not in SPIKE).
    #[serde(default)]
    pub custom_metadata: BTreeMap<String, String>,
    /// Whether every write must carry `cas` (not in SPIKE).
    #[serde(default)]
    pub cas_required: bool,
    /// Age after which versions expire, e.g. `1h`; `0s`: never (not in SPIKE).
    #[serde(default = "zero_duration")]
    pub delete_version_after: String,
}

fn zero_duration() -> String {
    "0s".to_owned()
}

/// `POST /v1/store/secrets/metadata?action=get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataResponse {
    /// Per-version metadata by version number.
    pub versions: BTreeMap<u64, VersionMetadata>,
    /// The secret's metadata.
    pub metadata: SecretMetadata,
}

/// `POST /v1/acl/policy`: create or replace a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutPolicyRequest {
    /// Unique name.
    pub name: String,
    /// Regular expression matched against the caller's whole SPIFFE ID.
    #[serde(rename = "spiffeidPattern")]
    pub spiffe_id_pattern: String,
    /// Regular expression matched against the whole secret path.
    pub path_pattern: String,
    /// Permissions: `read`, `write`, `list`, `execute`, `super`.
    pub permissions: Vec<String>,
}

/// `?action=get|delete` on policies. `id` carries the policy's name, as in SPIKE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyIdRequest {
    /// The policy's name.
    pub id: String,
}

/// A stored policy.
///
/// SPIKE's get-policy answer spells the pattern field `spiffiedPattern`; Nexus sends both that
/// and `spiffeidPattern`, and reads whichever is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PolicyWire", into = "PolicyWire")]
pub struct PolicyResponse {
    /// Same as `name` (SPIKE keeps the field).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The SPIFFE ID pattern.
    pub spiffe_id_pattern: String,
    /// The path pattern.
    pub path_pattern: String,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// When it was first created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// [`PolicyResponse`] as it travels.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyWire {
    #[serde(default)]
    id: String,
    name: String,
    #[serde(rename = "spiffeidPattern", default)]
    spiffe_id_pattern: Option<String>,
    #[serde(rename = "spiffiedPattern", default)]
    spiffied_pattern: Option<String>,
    #[serde(default)]
    path_pattern: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<PolicyWire> for PolicyResponse {
    fn from(wire: PolicyWire) -> Self {
        PolicyResponse {
            id: wire.id,
            name: wire.name,
            spiffe_id_pattern: wire
                .spiffe_id_pattern
                .or(wire.spiffied_pattern)
                .unwrap_or_default(),
            path_pattern: wire.path_pattern,
            permissions: wire.permissions,
            created_at: wire.created_at,
            updated_at: wire.updated_at,
        }
    }
}

impl From<PolicyResponse> for PolicyWire {
    fn from(policy: PolicyResponse) -> Self {
        PolicyWire {
            id: policy.id,
            name: policy.name,
            spiffied_pattern: Some(policy.spiffe_id_pattern.clone()),
            spiffe_id_pattern: Some(policy.spiffe_id_pattern),
            path_pattern: policy.path_pattern,
            permissions: policy.permissions,
            created_at: policy.created_at,
            updated_at: policy.updated_at,
        }
    }
}

/// `?action=list` on policies: optional exact-string filters, as SPIKE's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPoliciesRequest {
    /// Only policies with exactly this SPIFFE ID pattern.
    #[serde(
        rename = "spiffeidPattern",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spiffe_id_pattern: Option<String>,
    /// Only policies with exactly this path pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_pattern: Option<String>,
}

/// The policies, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPoliciesResponse {
    /// SPIKE sends `id` and `name`; Nexus sends every field.
    pub policies: Vec<PolicyResponse>,
}

/// Where Nexus is in its root key lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealState {
    /// No root key exists yet; waiting for enough keepers to create one.
    Uninitialized,
    /// A root key exists but is not in memory; collecting shards from keepers.
    Sealed,
    /// Serving.
    Ready,
}

/// Keeper reachability as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeeperStatus {
    /// Configured keepers.
    pub total: usize,
    /// Keepers that answered the last probe.
    pub reachable: usize,
    /// Shards needed to rebuild the root key.
    pub threshold: u8,
    /// The keeper set's generation: 0 as first configured, one more after each rekey.
    #[serde(default)]
    pub generation: u64,
}

/// `POST /v1/status` (or `GET`): not in SPIKE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// Whether a root key has ever been created for this datastore.
    pub initialized: bool,
    /// Lifecycle state.
    pub state: SealState,
    /// Keepers.
    pub keepers: KeeperStatus,
    /// Why Nexus is not ready, if it is not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Who sealed Nexus and when, while it is sealed by an operator (`spike operator seal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_seal: Option<OperatorSeal>,
    /// Nexus's version.
    pub version: String,
}

/// An operator's seal (`POST /v1/operator/seal`): the root key is out of memory until
/// `POST /v1/operator/unseal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSeal {
    /// The SPIFFE ID of the operator who sealed.
    pub by: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// `POST /v1/operator/rotate` answer (body `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateResponse {
    /// Data keys re-wrapped under the new root key (secret versions and policies).
    pub rewrapped: u64,
    /// Time the re-wrapping transaction took, in milliseconds.
    pub duration_ms: u64,
}

/// `POST /v1/operator/recover`: every recovery shard, by shard id. Only the recover role.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverResponse {
    /// Shard id to its 32 bytes (JSON: an array of 32 numbers, as SPIKE sends it).
    pub shards: BTreeMap<u8, Vec<u8>>,
}

impl std::fmt::Debug for RecoverResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoverResponse")
            .field("shard_ids", &self.shards.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for RecoverResponse {
    fn drop(&mut self) {
        for shard in self.shards.values_mut() {
            shard.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// `POST /v1/operator/restore`: one recovery shard. Only the restore role.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// Shard id (1-based).
    pub id: u8,
    /// The shard's 32 bytes.
    pub shard: Vec<u8>,
}

impl std::fmt::Debug for RestoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreRequest")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for RestoreRequest {
    fn drop(&mut self) {
        self.shard.iter_mut().for_each(|b| *b = 0);
    }
}

/// Progress of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResponse {
    /// Distinct shards collected so far.
    pub collected: usize,
    /// Shards still needed.
    pub remaining: usize,
    /// Whether the root key is restored (Nexus is ready).
    pub restored: bool,
}

/// A keeper's shard on the wire (`/v1/store/contribute` request, `/v1/store/shard` answer):
/// 32 bytes as a JSON array of numbers, as SPIKE sends it. Zeroed when dropped.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBody {
    /// The shard's bytes.
    pub shard: Vec<u8>,
    /// The keeper set's generation the shard belongs to (a rekey stages the next
    /// generation's shard beside the current one). Absent, as SPIKE sends it: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// `/v1/store/shard` request: which generation's shard (absent, as SPIKE sends `{}`: 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRequest {
    /// The keeper set's generation.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

/// `/v1/store/retain` request: the keeper forgets every shard of a generation below this
/// one (a later one, staged by a rekey in progress, stays), or with `exactly`, every shard
/// but this generation's (a failed rekey's staged shard goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainRequest {
    /// The generation to keep.
    pub generation: u64,
    /// Forget later generations too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exactly: bool,
}

/// `POST /v1/operator/rekey`: the new keeper set and threshold. Only the superuser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RekeyRequest {
    /// The keepers' URLs, in shard-id order (the first holds shard 1).
    pub keepers: Vec<String>,
    /// Shards needed to rebuild the root key (2 to the number of keepers).
    pub threshold: u8,
    /// Also replace the root key (a rotation, then the new key's shards to the new keepers).
    #[serde(default)]
    pub new_root_key: bool,
}

/// `POST /v1/operator/rekey` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RekeyResponse {
    /// The keeper set's generation now in force.
    pub generation: u64,
    /// Keepers in the new set.
    pub keepers: usize,
    /// Its threshold.
    pub threshold: u8,
    /// Whether the root key was replaced too.
    pub new_root_key: bool,
    /// Data keys re-wrapped, when the root key was replaced.
    #[serde(default)]
    pub rewrapped: u64,
    /// Keepers (of the old set or the new) that did not confirm forgetting their older
    /// shards; they still hold a shard of an earlier generation until they restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_forgotten: Vec<String>,
    /// Recovery shards exported before no longer match the keeper set's parameters (or
    /// key): export them again with `spike operator recover`. Always true.
    pub recovery_shards_stale: bool,
}

impl std::fmt::Debug for ShardBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardBody([REDACTED])")
    }
}

impl Drop for ShardBody {
    fn drop(&mut self) {
        self.shard.iter_mut().for_each(|b| *b = 0);
    }
}

/// Bytes in a shard: one per byte of the root key.
pub const SHARD_LEN: usize = 32;

/// Why a shard body was refused. The message never holds a byte of a shard: serde_json names
/// at most a value that is not a byte (`300`, `-1`, `"a"`) and a position, and the length
/// error only the count.
#[derive(Debug, thiserror::Error)]
pub enum ShardBodyError {
    /// Not JSON, or not `{"shard": [numbers 0 to 255]}`.
    #[error("malformed shard body: {0}")]
    Malformed(serde_json::Error),
    /// A shard of the wrong length.
    #[error("shard must be {SHARD_LEN} numbers, got {0}")]
    Length(usize),
}

/// A shard body as [`ShardBody::parse`] read it. No `Debug`: it holds the shard.
pub struct ParsedShard {
    /// The shard's bytes, zeroed when dropped.
    pub value: Zeroizing<[u8; SHARD_LEN]>,
    /// The keeper set's generation it belongs to (0 when absent, as SPIKE sends it).
    pub generation: u64,
}

impl ShardBody {
    /// Reads a shard body as the keeper receives it (`/v1/store/contribute`) and Nexus reads a
    /// keeper's answer (`/v1/store/shard`): exactly [`SHARD_LEN`] bytes and the generation,
    /// other fields ignored (as SPIKE's keepers do). Every copy of the bytes made on the way
    /// is zeroized. Whether an all-zero shard means "none" or is refused is the caller's
    /// decision.
    pub fn parse(body: &[u8]) -> Result<ParsedShard, ShardBodyError> {
        let mut parsed: ShardBody =
            serde_json::from_slice(body).map_err(ShardBodyError::Malformed)?;
        let shard = Zeroizing::new(std::mem::take(&mut parsed.shard));
        let value: [u8; SHARD_LEN] = shard
            .as_slice()
            .try_into()
            .map_err(|_| ShardBodyError::Length(shard.len()))?;
        Ok(ParsedShard {
            value: Zeroizing::new(value),
            generation: parsed.generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_bodies_parse_to_exactly_32_bytes() {
        let shard: Vec<u8> = (1..=32).collect();
        let body =
            serde_json::to_vec(&serde_json::json!({ "shard": shard, "extra": 1 })).expect("json");
        let parsed = ShardBody::parse(&body).expect("a shard");
        assert_eq!(parsed.value.as_slice(), shard.as_slice());
        assert_eq!(parsed.generation, 0, "absent, as SPIKE sends it");
        let staged = serde_json::to_vec(&serde_json::json!({ "shard": shard, "generation": 7 }))
            .expect("json");
        assert_eq!(ShardBody::parse(&staged).expect("a shard").generation, 7);
        for (bad, wanted) in [
            (r#"{"shard":[1,2,3]}"#, "got 3"),
            (r#"{"shard":[]}"#, "got 0"),
            (r#"{"shard":[300]}"#, "malformed"),
            (r#"{"shard":[-1]}"#, "malformed"),
            (r#"{"shard":"AQID"}"#, "malformed"),
            (r#"{}"#, "missing field"),
            ("", "malformed"),
        ] {
            let Err(e) = ShardBody::parse(bad.as_bytes()) else {
                panic!("{bad} was accepted");
            };
            assert!(e.to_string().contains(wanted), "{bad}: {e}");
        }
    }

    #[test]
    fn debug_never_shows_values() {
        let mut values = Values::new();
        values.insert("password".into(), "hunter2".into());
        let put = PutSecretRequest {
            path: "db".into(),
            values: values.clone(),
            cas: None,
        };
        let got = GetSecretResponse {
            data: values,
            version: 1,
        };
        for text in [format!("{put:?}"), format!("{got:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("password"), "{text}");
        }
    }

    #[test]
    fn spike_shapes_parse() {
        let put: PutSecretRequest =
            serde_json::from_str(r#"{"path":"a/b","values":{"k":"v"}}"#).expect("put");
        assert_eq!(put.cas, None);
        let get: GetSecretRequest = serde_json::from_str(r#"{"path":"a/b"}"#).expect("get");
        assert_eq!(get.version, 0);
        let del: VersionsRequest = serde_json::from_str(r#"{"path":"a"}"#).expect("delete");
        assert!(del.versions.is_empty());
        let policy: PutPolicyRequest = serde_json::from_str(
            r#"{"name":"n","spiffeidPattern":"^a$","pathPattern":"b","permissions":["read"]}"#,
        )
        .expect("policy");
        assert_eq!(policy.spiffe_id_pattern, "^a$");
    }

    #[test]
    fn policy_answers_carry_both_spellings() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let policy = PolicyResponse {
            id: "p".into(),
            name: "p".into(),
            spiffe_id_pattern: "^x$".into(),
            path_pattern: "y".into(),
            permissions: vec!["read".into()],
            created_at: now,
            updated_at: now,
        };
        let wire = serde_json::to_value(&policy).expect("json");
        assert_eq!(wire["spiffeidPattern"], "^x$");
        assert_eq!(wire["spiffiedPattern"], "^x$");
        let back: PolicyResponse = serde_json::from_value(wire).expect("parse back");
        assert_eq!(back, policy);
        let spike: PolicyResponse = serde_json::from_str(
            r#"{"id":"p","name":"p","spiffiedPattern":"^x$","pathPattern":"y","permissions":["read"],"createdAt":"1970-01-01T00:00:00Z","updatedAt":"1970-01-01T00:00:00Z"}"#,
        )
        .expect("SPIKE's spelling");
        assert_eq!(spike, policy);
    }

    #[test]
    fn metadata_versions_are_string_keyed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let meta = MetadataResponse {
            versions: [(
                3,
                VersionMetadata {
                    version: 3,
                    created_time: now,
                    deleted_time: None,
                    deletion_time: Some(now + time::Duration::hours(1)),
                    created_by: "spiffe://td/x".into(),
                },
            )]
            .into(),
            metadata: SecretMetadata {
                current_version: 3,
                oldest_version: 3,
                created_time: now,
                updated_time: now,
                max_versions: 10,
                created_by: "spiffe://td/x".into(),
                custom_metadata: BTreeMap::new(),
                cas_required: false,
                delete_version_after: "0s".into(),
            },
        };
        let json = serde_json::to_value(&meta).expect("json");
        assert_eq!(json["versions"]["3"]["version"], 3);
        assert_eq!(json["metadata"]["currentVersion"], 3);
        assert_eq!(json["metadata"]["deleteVersionAfter"], "0s");
        assert_eq!(
            json["versions"]["3"]["deletionTime"], "1970-01-01T01:00:00Z",
            "Vault's deletion_time, in the API's camelCase"
        );
        let back: MetadataResponse = serde_json::from_value(json).expect("back");
        assert_eq!(back, meta);
        // A SPIKE answer, without the KV v2 fields, still reads.
        let spike: SecretMetadata = serde_json::from_str(
            r#"{"currentVersion":3,"oldestVersion":3,"createdTime":"1970-01-01T00:00:00Z","updatedTime":"1970-01-01T00:00:00Z","maxVersions":10}"#,
        )
        .expect("SPIKE's metadata");
        assert_eq!(spike.delete_version_after, "0s");
        assert!(!spike.cas_required && spike.custom_metadata.is_empty());
    }

    #[test]
    fn kv2_requests_refuse_unknown_fields_and_take_vault_names() {
        let put: PutMetadataRequest = serde_json::from_str(
            r#"{"path":"a","max_versions":3,"cas_required":true,"delete_version_after":"1h","custom_metadata":{"k":"v"}}"#,
        )
        .expect("Vault's names");
        assert_eq!(put.max_versions, Some(3));
        assert_eq!(
            put.delete_version_after,
            Some(DurationValue::Text("1h".into()))
        );
        let seconds: PutMetadataRequest =
            serde_json::from_str(r#"{"path":"a","deleteVersionAfter":90}"#).expect("seconds");
        assert_eq!(
            seconds.delete_version_after,
            Some(DurationValue::Seconds(90))
        );
        assert!(serde_json::from_str::<PutMetadataRequest>(r#"{"path":"a","x":1}"#).is_err());
        assert!(serde_json::from_str::<ListSecretsRequest>(r#"{"prefix":"a","page":2}"#).is_err());
        let spike: ListSecretsRequest = serde_json::from_str("{}").expect("SPIKE's list");
        assert_eq!(spike, ListSecretsRequest::default());
        let page = ListSecretsResponse {
            keys: vec!["a".into()],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_string(&page).expect("json"),
            r#"{"keys":["a"]}"#,
            "SPIKE's shape when there is no next page"
        );
    }
}

/// The version byte of cipher output, `0x01` (AES-256-GCM, 12-byte nonce).
pub const CIPHER_VERSION: u8 = 1;
/// Largest ciphertext the cipher routes accept (SPIKE's default).
pub const MAX_CIPHERTEXT_BYTES: usize = 65_536;
/// Largest plaintext the cipher routes accept (room for the 16-byte tag).
pub const MAX_PLAINTEXT_BYTES: usize = MAX_CIPHERTEXT_BYTES - 16;
/// The Content-Type of the cipher routes' stream mode: raw plaintext in, `0x01 ‖ nonce ‖
/// ciphertext` out (and the reverse for decrypt).
pub const OCTET_STREAM: &str = "application/octet-stream";

/// `POST /v1/cipher/encrypt` in JSON mode.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The plaintext, standard base64.
    #[serde(with = "base64_std")]
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Accepted for SPIKE compatibility and ignored: the algorithm is AES-256-GCM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

impl std::fmt::Debug for EncryptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptRequest")
            .field("plaintext", &"[REDACTED]")
            .finish()
    }
}

/// `POST /v1/cipher/encrypt` answer in JSON mode, and `POST /v1/cipher/decrypt` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ciphertext {
    /// Format version, [`CIPHER_VERSION`].
    pub version: u8,
    /// The 12-byte nonce, standard base64.
    #[serde(with = "base64_std")]
    pub nonce: Vec<u8>,
    /// Ciphertext and tag, standard base64.
    #[serde(with = "base64_std")]
    pub ciphertext: Vec<u8>,
    /// Accepted for SPIKE compatibility and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

/// `POST /v1/cipher/decrypt` answer in JSON mode.
#[derive(Clone, Serialize, Deserialize)]
pub struct DecryptResponse {
    /// The plaintext, standard base64.
    #[serde(with = "base64_std")]
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DecryptResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptResponse")
            .field("plaintext", &"[REDACTED]")
            .finish()
    }
}

/// Bytes as standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
mod base64_std {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: From<Vec<u8>>,
    {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(T::from)
            .map_err(|_| serde::de::Error::custom("not valid standard base64"))
    }
}
