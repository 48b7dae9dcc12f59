//! Nexus's shared state ([`Nexus`]), handed to every request and background task, and the
//! error every operation reports ([`ServiceError`]), independent of HTTP. The operations
//! themselves live with their concept: [`crate::secrets`], [`crate::policy`], [`crate::keys`].

use std::sync::Arc;

use nexus_crypto::RootKey;

use crate::audit::AuditLog;
use crate::keys::sealing::SealingError;
use crate::keys::state::KeyState;
use crate::metrics::Metrics;
use crate::policy::access::Access;
use crate::store::{Store, StoreError};

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
    /// One policy reload at a time ([`crate::policy::sync`]); callers that waited find the
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
    pub(crate) fn write_failed(&self, error: StoreError) -> ServiceError {
        if matches!(error, StoreError::KeyChanged) {
            self.reseed_now.notify_one();
        }
        error.into()
    }

    /// Opens a record with `root`, else with the key installed now or the one before the
    /// last rotation: a record read around a rotation's commit may be wrapped under either.
    pub(crate) fn open<T>(
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
}
