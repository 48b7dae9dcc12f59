//! The root key's life in memory: absent while Nexus is uninitialised or sealed, then held
//! (never on disk) until the process exits. Handlers read it lock-free; [`crate::keys::unseal`]
//! writes it once, [`crate::keys::rotation`] replaces it (keeping the previous key for records read
//! just before the rotation committed, until the rotation is finished).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use nexus_api::model::{KeeperStatus, SealState, StatusResponse};
use nexus_crypto::RootKey;

/// What `/v1/status` reports besides the key itself.
#[derive(Debug, Clone)]
struct Progress {
    initialized: bool,
    reachable: usize,
    message: String,
}

/// The root key slot and the lifecycle's progress.
#[derive(Debug)]
pub struct KeyState {
    root: ArcSwapOption<RootKey>,
    previous: ArcSwapOption<RootKey>,
    progress: Mutex<Progress>,
    threshold: AtomicU8,
    keepers: usize,
}

impl KeyState {
    /// An empty slot for a root key split `threshold` of `keepers`.
    pub fn new(threshold: u8, keepers: usize) -> Self {
        KeyState {
            root: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            progress: Mutex::new(Progress {
                initialized: false,
                reachable: 0,
                message: "starting".into(),
            }),
            threshold: AtomicU8::new(threshold),
            keepers,
        }
    }

    /// The root key, once Nexus is ready.
    pub fn root(&self) -> Option<Arc<RootKey>> {
        self.root.load_full()
    }

    /// Installs the root key: Nexus is ready from now on.
    pub fn set_root(&self, root: RootKey) -> Arc<RootKey> {
        let root = Arc::new(root);
        self.root.store(Some(root.clone()));
        self.update(|p| {
            p.initialized = true;
            p.message.clear();
        });
        root
    }

    /// Replaces the root key after a rotation; the old one stays as [`previous`](Self::previous).
    pub fn rotate_to(&self, root: RootKey) -> Arc<RootKey> {
        let root = Arc::new(root);
        let old = self.root.swap(Some(root.clone()));
        self.previous.store(old);
        root
    }

    /// The key before the last rotation, until the rotation is finished.
    pub fn previous(&self) -> Option<Arc<RootKey>> {
        self.previous.load_full()
    }

    /// Forgets the previous key (the rotation is finished).
    pub fn forget_previous(&self) {
        self.previous.store(None);
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Records whether the datastore holds a root key record.
    pub fn set_initialized(&self, initialized: bool) {
        self.update(|p| p.initialized = initialized);
    }

    /// Records how many keepers answered the last round.
    pub fn set_reachable(&self, reachable: usize) {
        self.update(|p| p.reachable = reachable);
    }

    /// Records why Nexus is not ready yet.
    pub fn set_waiting(&self, message: impl Into<String>) {
        let message = message.into();
        self.update(|p| p.message = message);
    }

    /// Shards needed.
    pub fn threshold(&self) -> u8 {
        self.threshold.load(Ordering::Relaxed)
    }

    /// Records the threshold the stored root key was split with (it wins over the
    /// configured one, which only applies to a first start).
    pub fn set_threshold(&self, threshold: u8) {
        self.threshold.store(threshold, Ordering::Relaxed);
    }

    /// The status as `/v1/status` reports it.
    pub fn status(&self) -> StatusResponse {
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let state = if self.root.load().is_some() {
            SealState::Ready
        } else if progress.initialized {
            SealState::Sealed
        } else {
            SealState::Uninitialized
        };
        StatusResponse {
            initialized: progress.initialized,
            state,
            keepers: KeeperStatus {
                total: self.keepers,
                reachable: progress.reachable,
                threshold: self.threshold(),
            },
            message: if state == SealState::Ready {
                String::new()
            } else {
                progress.message
            },
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}
