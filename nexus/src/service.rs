//! What Nexus does, independent of HTTP: secret and policy operations over the store, with
//! sealing on the way in and opening on the way out. Authorisation is the caller's
//! ([`crate::api`]); this layer assumes it was granted.

use std::sync::Arc;

use nexus_api::model::{
    GetSecretResponse, ListPoliciesRequest, MetadataResponse, PolicyResponse, PutPolicyRequest,
    PutSecretRequest, SecretMetadata, VersionMetadata,
};
use nexus_crypto::RootKey;
use policies::{Permission, Policy};
use time::OffsetDateTime;

use crate::access::Access;
use crate::audit_log::AuditLog;
use crate::metrics::Metrics;
use crate::root_key::KeyState;
use crate::sealing::{self, SealingError};
use crate::store::{PutVersion, Store, StoreError};
use crate::validate;

/// Why an operation failed, in terms the API maps to its error codes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No root key in memory yet.
    #[error("{0}")]
    NotReady(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A check-and-set or uniqueness conflict.
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The datastore cannot be reached right now.
    #[error("the datastore is unavailable (unreachable or overloaded); retry shortly")]
    Unavailable,
    /// Something that should not happen; details are logged, not returned.
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::KeyChanged => ServiceError::NotReady(
                "the root key was rotated by another Nexus and this one is switching to it; retry shortly".into(),
            ),
            StoreError::CasMismatch { expected, current } => ServiceError::Conflict(format!(
                "check-and-set expected version {expected}, but the current version is {current}"
            )),
            error if error.is_unavailable() => {
                tracing::warn!(%error, "datastore unavailable");
                ServiceError::Unavailable
            }
            error => {
                tracing::error!(%error, "datastore error");
                ServiceError::Internal
            }
        }
    }
}

impl From<SealingError> for ServiceError {
    fn from(error: SealingError) -> Self {
        tracing::error!(%error, "a stored record does not open under the root key");
        ServiceError::Internal
    }
}

impl From<nexus_crypto::CryptoError> for ServiceError {
    fn from(error: nexus_crypto::CryptoError) -> Self {
        tracing::error!(%error, "sealing failed");
        ServiceError::Internal
    }
}

/// How long a request waits for the keeper loop to fetch a key another Nexus rotated.
const KEY_SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Nexus's shared state.
#[derive(Debug)]
pub struct Nexus {
    /// The datastore.
    pub store: Store,
    /// The root key and lifecycle progress.
    pub keys: KeyState,
    /// Compiled policies.
    pub access: Access,
    /// Versions kept for new secrets.
    pub max_versions: u32,
    /// Where every request's audit line goes.
    pub audit: AuditLog,
    /// Counters and gauges for `/metrics`.
    pub metrics: Metrics,
    /// One policy reload at a time ([`crate::policy_sync`]); callers that waited find the
    /// cache current and skip theirs.
    pub(crate) policy_reload: tokio::sync::Mutex<()>,
    /// Recovery shards submitted so far by `restore` (break-glass), in memory only.
    pub(crate) restoring: tokio::sync::Mutex<Vec<nexus_crypto::Shard>>,
    /// Writers that seal under the root key hold it shared; a rotation holds it exclusively,
    /// so no record is sealed under a key the rotation is retiring.
    pub(crate) rotation_gate: tokio::sync::RwLock<()>,
    /// The cipher service's key, once loaded ([`crate::cipher::key`]); rotations re-wrap it
    /// but never change it.
    pub(crate) cipher_key: arc_swap::ArcSwapOption<nexus_crypto::DataKey>,
    /// Wakes the keeper loop at once: after a rotation here (to re-seed keepers), or when
    /// another Nexus rotated the key (to fetch it from keepers).
    pub(crate) reseed_now: tokio::sync::Notify,
}

impl Nexus {
    /// Shared state over `store`, sealed until the root key is installed.
    pub fn new(
        store: Store,
        keys: KeyState,
        access: Access,
        max_versions: u32,
        audit: AuditLog,
    ) -> Self {
        Nexus {
            store,
            keys,
            access,
            max_versions,
            audit,
            metrics: Metrics::default(),
            policy_reload: tokio::sync::Mutex::new(()),
            restoring: tokio::sync::Mutex::new(Vec::new()),
            rotation_gate: tokio::sync::RwLock::new(()),
            reseed_now: tokio::sync::Notify::new(),
            cipher_key: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The root key, or `NotReady` while sealed.
    pub fn root(&self) -> Result<Arc<RootKey>, ServiceError> {
        self.keys.root().ok_or_else(|| {
            let status = self.keys.status();
            ServiceError::NotReady(if status.message.is_empty() {
                "Nexus is sealed".into()
            } else {
                format!("Nexus is not ready: {}", status.message)
            })
        })
    }

    /// A failed sealed write; if it failed because another Nexus rotated the key, the keeper
    /// loop is woken to switch keys.
    fn write_failed(&self, error: StoreError) -> ServiceError {
        if matches!(error, StoreError::KeyChanged) {
            self.reseed_now.notify_one();
        }
        error.into()
    }

    /// Opens a record with `root`, else with the key installed now or the one before the
    /// last rotation: a record read around a rotation's commit may be wrapped under either.
    fn open<T>(
        &self,
        root: &RootKey,
        open: impl Fn(&RootKey) -> Result<T, SealingError>,
    ) -> Result<T, ServiceError> {
        let first = match open(root) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        for other in [self.keys.root(), self.keys.previous()]
            .into_iter()
            .flatten()
        {
            if *other != *root
                && let Ok(value) = open(&other)
            {
                return Ok(value);
            }
        }
        Err(first.into())
    }

    /// If another Nexus rotated the root key, switches to the new one: from the rotation
    /// record while it exists, else by asking the keeper loop to fetch it (and answering
    /// "not ready" meanwhile). `None` if the key in memory is still the stored one.
    ///
    /// With `wait`, a request waits (a few seconds at most) for the keeper loop to fetch it.
    pub(crate) async fn adopt_rotated_key(
        &self,
        wait: bool,
    ) -> Result<Option<Arc<RootKey>>, ServiceError> {
        let stored = || async {
            let record = self
                .store
                .key_record()
                .await?
                .ok_or(ServiceError::Internal)?;
            let check = nexus_crypto::KeyCheck::from_bytes(&record.key_check)?;
            Ok::<_, ServiceError>((record, check))
        };
        let (_, check) = stored().await?;
        if check.verify(&*self.root()?) {
            return Ok(None);
        }
        // Writers wait while the key changes; the check is repeated under the gate, since
        // another request may have switched keys meanwhile.
        let writers = self.rotation_gate.write().await;
        let root = self.root()?;
        let (record, check) = stored().await?;
        if check.verify(&root) {
            return Ok(None);
        }
        if let Some(rotation) = self.store.rotation().await?
            && let Some(new) = crate::rotation::recover(&root, &rotation, &check)
        {
            self.load_policies(&new).await?;
            let new = self.keys.rotate_to(new);
            self.store.set_write_fence(Some(record.key_check));
            tracing::info!("another Nexus rotated the root key; switched to the new key");
            return Ok(Some(new));
        }
        // The record is gone, so every keeper holds the new key's shards: the keeper loop
        // fetches them.
        drop(writers);
        self.reseed_now.notify_one();
        let deadline = tokio::time::Instant::now() + KEY_SWITCH_WAIT;
        while wait && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let root = self.root()?;
            if check.verify(&root) {
                return Ok(Some(root));
            }
        }
        Err(ServiceError::NotReady(
            "the root key was rotated by another Nexus and this one is still fetching it from the keepers; retry shortly".into(),
        ))
    }

    /// Writes a new version; returns its number.
    pub async fn put_secret(
        &self,
        request: &PutSecretRequest,
        caller: &str,
    ) -> Result<u64, ServiceError> {
        validate::path(&request.path).map_err(ServiceError::Invalid)?;
        validate::values(&request.values).map_err(ServiceError::Invalid)?;
        let _gate = self.rotation_gate.read().await;
        let root = self.root()?;
        let put = PutVersion {
            path: &request.path,
            cas: request.cas,
            max_versions: self.max_versions,
            created_by: caller,
            now: OffsetDateTime::now_utc(),
        };
        let path = request.path.clone();
        let values = &request.values;
        let version = self
            .store
            .put_version(put, move |version| {
                sealing::seal_values(&root, &path, version, values)
            })
            .await
            .map_err(|e| self.write_failed(e))?;
        Ok(version)
    }

    /// Reads a version (0: current).
    pub async fn get_secret(
        &self,
        path: &str,
        version: u64,
    ) -> Result<GetSecretResponse, ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        validate::versions(&[version]).map_err(ServiceError::Invalid)?;
        let root = self.root()?;
        let stored = self.store.get_version(path, version).await?;
        let open = |key: &RootKey| sealing::open_values(key, path, stored.version, &stored.sealed);
        let data = match self.open(&root, open) {
            Ok(data) => data,
            // The key was rotated (here, between reading the key and the record, or by
            // another replica) and this record re-wrapped: open it with the key now current.
            Err(error) => {
                let current = match self.adopt_rotated_key(true).await? {
                    Some(new) => new,
                    None => self.root()?,
                };
                self.open(&current, open).map_err(|_| error)?
            }
        };
        Ok(GetSecretResponse {
            data,
            version: stored.version,
        })
    }

    /// Soft-deletes versions.
    pub async fn delete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .delete_versions(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    /// Restores soft-deleted versions.
    pub async fn undelete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .undelete_versions(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    /// Destroys versions, or the whole secret when none are named.
    pub async fn destroy_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .destroy(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    fn check_versions_call(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        validate::versions(versions).map_err(ServiceError::Invalid)?;
        self.root()?;
        Ok(())
    }

    /// Every secret path, sorted.
    pub async fn list_secrets(&self) -> Result<Vec<String>, ServiceError> {
        self.root()?;
        Ok(self.store.list_paths().await?)
    }

    /// A secret's metadata.
    pub async fn metadata(&self, path: &str) -> Result<MetadataResponse, ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        self.root()?;
        let meta = self.store.metadata(path).await?;
        Ok(MetadataResponse {
            versions: meta
                .versions
                .into_iter()
                .map(|v| {
                    (
                        v.version,
                        VersionMetadata {
                            version: v.version,
                            created_time: v.created_at,
                            deleted_time: v.deleted_at,
                            created_by: v.created_by,
                        },
                    )
                })
                .collect(),
            metadata: SecretMetadata {
                current_version: meta.current_version,
                oldest_version: meta.oldest_version,
                created_time: meta.created_at,
                updated_time: meta.updated_at,
                max_versions: meta.max_versions,
                created_by: meta.created_by,
            },
        })
    }

    /// Creates or replaces a policy; the access cache is current when this returns.
    pub async fn put_policy(&self, request: &PutPolicyRequest) -> Result<(), ServiceError> {
        to_policy(request)?
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let gate = self.rotation_gate.read().await;
        let root = self.root()?;
        let sealed = sealing::seal_policy(&root, request)?;
        let generation = self
            .store
            .put_policy(&request.name, sealed, OffsetDateTime::now_utc())
            .await
            .map_err(|e| self.write_failed(e))?;
        drop(gate);
        self.policies_changed(&root, generation).await
    }

    /// Deletes a policy; the access cache is current when this returns.
    pub async fn delete_policy(&self, name: &str) -> Result<(), ServiceError> {
        let root = self.root()?;
        let generation = self
            .store
            .delete_policy(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("policy {name:?}")))?;
        self.policies_changed(&root, generation).await
    }

    /// A policy by name.
    pub async fn get_policy(&self, name: &str) -> Result<PolicyResponse, ServiceError> {
        let root = self.root()?;
        let stored = self
            .store
            .get_policy(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("policy {name:?}")))?;
        let policy = self.open(&root, |key| {
            sealing::open_policy(key, &stored.name, &stored.sealed)
        })?;
        Ok(policy_response(
            policy,
            stored.created_at,
            stored.updated_at,
        ))
    }

    /// Policies, optionally only those with exactly the given patterns.
    pub async fn list_policies(
        &self,
        filter: &ListPoliciesRequest,
    ) -> Result<Vec<PolicyResponse>, ServiceError> {
        let root = self.root()?;
        let mut out = Vec::new();
        for stored in self.store.list_policies().await? {
            let policy = self.open(&root, |key| {
                sealing::open_policy(key, &stored.name, &stored.sealed)
            })?;
            let keep = filter
                .spiffe_id_pattern
                .as_ref()
                .is_none_or(|p| *p == policy.spiffe_id_pattern)
                && filter
                    .path_pattern
                    .as_ref()
                    .is_none_or(|p| *p == policy.path_pattern);
            if keep {
                out.push(policy_response(
                    policy,
                    stored.created_at,
                    stored.updated_at,
                ));
            }
        }
        Ok(out)
    }

    /// Decrypts every stored policy and swaps the access cache to them, labelled with the
    /// policy generation they reflect.
    pub async fn load_policies(&self, root: &RootKey) -> Result<(), ServiceError> {
        // The generation is read first: the policies read after it include every change up
        // to it (and maybe later ones), so the label may understate, never overstate, how
        // new the set is. Understating costs one extra reload at the next announcement.
        let generation = self.store.policy_generation().await?;
        let mut loaded = Vec::new();
        for stored in self.store.list_policies().await? {
            let request = self.open(root, |key| {
                sealing::open_policy(key, &stored.name, &stored.sealed)
            })?;
            match to_policy(&request) {
                Ok(policy) => loaded.push(policy),
                Err(error) => {
                    tracing::error!(policy = %stored.name, %error, "stored policy is invalid; ignoring it");
                }
            }
        }
        let count = loaded.len();
        let installed = self.access.install(generation, loaded).map_err(|error| {
            tracing::error!(%error, "stored policies do not compile");
            ServiceError::Internal
        })?;
        if installed {
            tracing::debug!(policies = count, generation, "policy cache rebuilt");
        }
        Ok(())
    }
}

fn to_policy(request: &PutPolicyRequest) -> Result<Policy, ServiceError> {
    let permissions = request
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(Policy::new(
        request.name.clone(),
        request.spiffe_id_pattern.clone(),
        request.path_pattern.clone(),
        permissions,
    ))
}

fn policy_response(
    policy: PutPolicyRequest,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> PolicyResponse {
    PolicyResponse {
        id: policy.name.clone(),
        name: policy.name,
        spiffe_id_pattern: policy.spiffe_id_pattern,
        path_pattern: policy.path_pattern,
        permissions: policy.permissions,
        created_at,
        updated_at,
    }
}
