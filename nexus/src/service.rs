//! Nexus's shared state ([`Nexus`]), handed to every request and background task,
//! independent of HTTP. The operations live with their concept: [`crate::secrets`],
//! [`crate::policy`], [`crate::keys`], [`crate::cipher`].

use std::sync::Arc;

use nexus_crypto::RootKey;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::{NotReady, ServiceError};
use crate::keys::sealing::SealingError;
use crate::keys::state::KeyState;
use crate::metrics::Metrics;
use crate::policy::access::Access;
use crate::store::{Store, StoreError};

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
    /// What dates records and audit lines.
    pub clock: Clock,
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
            clock: Clock::system(),
            restoring: tokio::sync::Mutex::new(Vec::new()),
            rotation_gate: tokio::sync::RwLock::new(()),
            reseed_now: tokio::sync::Notify::new(),
            cipher_key: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The same Nexus dated by `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The root key, or `NotReady` while sealed.
    pub fn root(&self) -> Result<Arc<RootKey>, ServiceError> {
        self.keys.root().ok_or_else(|| {
            let status = self.keys.status();
            ServiceError::NotReady(NotReady::Sealed(Some(status.message)))
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
