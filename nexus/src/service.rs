//! Nexus's shared state ([`Nexus`]), handed to every request and background task,
//! independent of HTTP. The operations live with their concept: [`crate::secrets`],
//! [`crate::policy`], [`crate::keys`], [`crate::cipher`].

use std::sync::Arc;

use nexus_crypto::RootKey;
use spiffe::X509Source;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::ServiceError;
use crate::keys::Lifecycle;
use crate::keys::keepers::Keepers;
use crate::keys::sealing::SealingError;
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::policy::access::Access;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError};

/// Nexus's shared state.
#[derive(Debug)]
pub struct Nexus {
    /// The datastore.
    pub store: Store,
    /// The root key's life: the one place that knows whether, and with which key, Nexus
    /// serves.
    pub keys: Lifecycle,
    /// Compiled policies.
    pub access: Access,
    /// Versions kept for new secrets.
    pub max_versions: u32,
    /// Whether every secret write must carry a check-and-set version (Vault's global
    /// `cas_required`), whatever the secret's own setting.
    pub cas_required: bool,
    /// Where every request's audit line goes.
    pub audit: AuditLog,
    /// Counters and gauges for `/metrics`.
    pub metrics: Metrics,
    /// What dates records and audit lines.
    pub clock: Clock,
    /// The cipher service's key, once loaded ([`crate::cipher`]); rotations re-wrap it
    /// but never change it.
    pub(crate) cipher_key: arc_swap::ArcSwapOption<nexus_crypto::DataKey>,
    /// The keeper set in force (the generation the datastore names), once the keeper loop
    /// has started; a rekey replaces it.
    pub(crate) keepers: arc_swap::ArcSwapOption<Keepers>,
    /// Held by each round of the keeper loop and by a rekey from staging to forgetting, so
    /// the loop never re-seeds a keeper of a set the rekey is retiring.
    pub(crate) keeper_rounds: tokio::sync::Mutex<()>,
    /// The bundles this Nexus's agent delivers, the set its TLS end verifies callers
    /// against; `None` (in-process tests without an agent): no per-request check.
    pub(crate) bundles: Option<X509Source>,
}

impl Nexus {
    /// Shared state over `store`, sealed until the root key is installed.
    pub fn new(
        store: Store,
        keys: Lifecycle,
        access: Access,
        max_versions: u32,
        audit: AuditLog,
    ) -> Self {
        Nexus {
            store,
            keys,
            access,
            max_versions,
            cas_required: false,
            audit,
            metrics: Metrics::default(),
            clock: Clock::system(),
            cipher_key: arc_swap::ArcSwapOption::empty(),
            keepers: arc_swap::ArcSwapOption::empty(),
            keeper_rounds: tokio::sync::Mutex::new(()),
            bundles: None,
        }
    }

    /// The same Nexus checking, on every request, that a caller of another trust domain
    /// still has its bundle in `source` (see [`crate::authz`]): a connection opened while
    /// a federation stood does not outlive it.
    pub fn with_bundles(mut self, source: X509Source) -> Self {
        self.bundles = Some(source);
        self
    }

    /// The same Nexus dated by `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same Nexus requiring check-and-set on every secret write, or not.
    pub fn with_cas_required(mut self, cas_required: bool) -> Self {
        self.cas_required = cas_required;
        self
    }

    /// Secret operations.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets::new(self)
    }

    /// Policy operations and the policy cache.
    pub fn policies(&self) -> Policies<'_> {
        Policies::new(self)
    }

    /// The root key, or `NotReady` while sealed.
    pub fn root(&self) -> Result<Arc<RootKey>, ServiceError> {
        self.keys.require_root().map_err(ServiceError::NotReady)
    }

    /// A failed sealed write; if it failed because another Nexus rotated the key or sealed
    /// Nexus, the keeper loop is woken to switch keys or to seal this one too.
    pub(crate) fn write_failed(&self, error: StoreError) -> ServiceError {
        // Another replica rotated the key or sealed Nexus: the keeper loop follows.
        if matches!(error, StoreError::KeyChanged | StoreError::Sealed) {
            self.keys.wake_keeper_loop();
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
