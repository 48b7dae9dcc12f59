//! The one owner of the root key's life: which [`Phase`] it is in, the key itself (and the
//! previous one during a rotation), the write gate, the fence that binds sealed writes to the
//! key, the operator's seal, the keeper loop's wake-up and the break-glass shards collected
//! so far. The rest of Nexus asks [`Lifecycle`]; only the transitions below change it.
//!
//! ```text
//!                           record found
//!   Uninitialised ───────────────────────────────▶ Sealed
//!         │                                         │  ▲
//!         │ first start: key created,               │  │ its policies do not load
//!         │ every keeper took its shard             │  │ (ticket dropped: back
//!         ▼                                         │  │ where it came from)
//!     Unsealing ◀─── key rebuilt from keepers ──────┘  │
//!         │  │       or from recovery shards           │
//!         │  └─────────────────────────────────────────┘
//!         │ policies loaded, write fence set
//!         ▼
//!       Ready ◀───────────────────────┐
//!         │ begin_rotation            │ commit: the new key in force, the previous one
//!         │ (waits for writers)       │ kept until every keeper holds its new shard;
//!         ▼                           │ or abort (ticket dropped): the key stays
//!     Rotating ───────────────────────┘
//!
//!   Ready ── begin_rekey ──▶ Rekeying ── finish: the new keeper set (generation, count,
//!     ▲                        │  │       threshold) in force ──▶ Ready
//!     └── abort (dropped) ─────┘  │ begin_rotation (a rekey with a new root key):
//!                                 └─▶ Rotating ── commit or abort ──▶ Rekeying
//!
//!   Sealed, Unsealing, Ready, Rekeying ── seal (an operator; waits for writers and
//!         │                     rotations, drops the key) ──▶ SealedByOperator
//!   SealedByOperator ── lift_seal (an operator) ──▶ Sealed (the keeper loop unseals)
//! ```
//!
//! Every other move is refused with [`IllegalTransition`]: no second unseal of a ready
//! Nexus, no rotation of a sealed one, one rekey at a time and no rotation beside it
//! (other than its own), no way back to `Uninitialised` once a record is found,
//! and no unseal of any kind (keepers, recovery shards) while an operator's seal holds. A
//! seal that lands while a key is being installed wins: the install finds the phase changed
//! and drops its key.
//!
//! # Concurrency
//!
//! Handlers read the key lock-free ([`Lifecycle::root`]). Writers that seal under the key
//! hold the gate shared ([`Lifecycle::write`]) and get the key with the key-check value the
//! datastore must still hold for their write to commit; a key change ([`Rotating`]) holds it
//! exclusively, so no record is sealed under a key being retired while readers go on with
//! whichever key opens their record. The phase itself sits under a short mutex never held
//! across an await.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwapOption;
use nexus_api::model::{KeeperStatus, OperatorSeal, SealState, StatusResponse};
use nexus_crypto::{RootKey, Shard};
use time::OffsetDateTime;
use tokio::sync::{Notify, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::waiting::Waiting;
use crate::error::NotReady;

/// Where the root key's life stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The datastore holds no root key record: a first start is creating the key.
    Uninitialised,
    /// A record exists but no key is in memory: waiting for keepers or recovery shards.
    Sealed,
    /// An operator sealed Nexus (`spike operator seal`): no key in memory, and none is
    /// taken from keepers or recovery shards until an operator lifts the seal.
    SealedByOperator,
    /// A key that passed the key check is in hand; the policies it seals are loading.
    Unsealing,
    /// Serving.
    Ready,
    /// The key is changing (a rotation here, or switching to another replica's new key):
    /// reads go on, sealed writes wait.
    Rotating,
    /// The keeper set is changing (`spike operator rekey`): serving as when ready, but no
    /// other rekey or rotation starts.
    Rekeying,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Uninitialised => "uninitialised",
            Phase::Sealed => "sealed",
            Phase::SealedByOperator => "sealed by an operator",
            Phase::Unsealing => "unsealing",
            Phase::Ready => "ready",
            Phase::Rotating => "rotating",
            Phase::Rekeying => "rekeying",
        })
    }
}

/// A transition the lifecycle does not allow from where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the root key cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The phase it was in.
    pub from: Phase,
    /// The phase asked for.
    pub to: Phase,
}

/// The key in force and the key-check value stored for it (`None` until one is stored).
#[derive(Debug)]
struct Current {
    root: Arc<RootKey>,
    fence: Option<Vec<u8>>,
}

/// Who sealed Nexus, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The operator's SPIFFE ID.
    pub by: String,
    /// When.
    pub at: OffsetDateTime,
}

impl Seal {
    /// As `/v1/status` shows it.
    pub fn to_status(&self) -> OperatorSeal {
        OperatorSeal {
            by: self.by.clone(),
            at: humantime::format_rfc3339_millis(std::time::SystemTime::from(self.at)).to_string(),
        }
    }
}

/// What `/v1/status` reports besides the phase.
#[derive(Debug)]
struct Progress {
    waiting: Option<Waiting>,
    /// Set exactly while the phase is [`Phase::SealedByOperator`].
    seal: Option<Seal>,
}

/// The root key's owner.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Mutex<Phase>,
    current: ArcSwapOption<Current>,
    previous: ArcSwapOption<RootKey>,
    progress: Mutex<Progress>,
    reachable: AtomicUsize,
    threshold: AtomicU8,
    keepers: AtomicUsize,
    generation: AtomicU64,
    gate: RwLock<()>,
    wake: Notify,
    recovery: tokio::sync::Mutex<Vec<Shard>>,
    seal_changes: tokio::sync::Mutex<()>,
}

impl Lifecycle {
    /// An uninitialised lifecycle for a key split `threshold` of `keepers`.
    pub fn new(threshold: u8, keepers: usize) -> Self {
        Lifecycle {
            phase: Mutex::new(Phase::Uninitialised),
            current: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            progress: Mutex::new(Progress {
                waiting: Some(Waiting::Starting),
                seal: None,
            }),
            reachable: AtomicUsize::new(0),
            threshold: AtomicU8::new(threshold),
            keepers: AtomicUsize::new(keepers),
            generation: AtomicU64::new(0),
            gate: RwLock::new(()),
            wake: Notify::new(),
            recovery: tokio::sync::Mutex::new(Vec::new()),
            seal_changes: tokio::sync::Mutex::new(()),
        }
    }

    fn lock_phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the lifecycle stands.
    pub fn phase(&self) -> Phase {
        *self.lock_phase()
    }

    /// The key in force, while ready or rotating.
    pub fn root(&self) -> Option<Arc<RootKey>> {
        self.current.load().as_ref().map(|c| c.root.clone())
    }

    /// The key in force, or why there is none.
    pub fn require_root(&self) -> Result<Arc<RootKey>, NotReady> {
        self.root().ok_or_else(|| self.not_ready())
    }

    /// Why there is no key in force: an operator's seal, or what the lifecycle is waiting
    /// for.
    pub fn not_ready(&self) -> NotReady {
        let progress = self.lock_progress();
        if let Some(seal) = &progress.seal {
            let seal = seal.to_status();
            return NotReady::SealedByOperator {
                by: seal.by,
                at: seal.at,
            };
        }
        NotReady::Sealed(progress.waiting.as_ref().map(ToString::to_string))
    }

    /// Who sealed Nexus and when, while it is sealed by an operator.
    pub fn operator_seal(&self) -> Option<Seal> {
        self.lock_progress().seal.clone()
    }

    /// The key before the last rotation, until every keeper holds the new one's shards.
    pub fn previous(&self) -> Option<Arc<RootKey>> {
        self.previous.load_full()
    }

    /// Records why Nexus is not serving yet.
    pub fn wait_for(&self, why: Waiting) {
        self.lock_progress().waiting = Some(why);
    }

    /// Records how many keepers answered the last round.
    pub fn set_reachable(&self, reachable: usize) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// Shards needed.
    pub fn threshold(&self) -> u8 {
        self.threshold.load(Ordering::Relaxed)
    }

    /// Records the threshold the stored key was split with (it wins over the configured
    /// one, which only applies to a first start).
    pub fn set_threshold(&self, threshold: u8) {
        self.threshold.store(threshold, Ordering::Relaxed);
    }

    /// Records the keeper set in force: its generation, how many keepers and the threshold
    /// (as stored; a rekey here or through another replica changes them).
    pub fn set_keeper_set(&self, generation: u64, keepers: usize, threshold: u8) {
        self.generation.store(generation, Ordering::Relaxed);
        self.keepers.store(keepers, Ordering::Relaxed);
        self.set_threshold(threshold);
    }

    /// The keeper set's generation in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The datastore holds a key record: an uninitialised lifecycle is sealed from now on.
    pub fn record_found(&self) {
        let mut phase = self.lock_phase();
        if *phase == Phase::Uninitialised {
            *phase = Phase::Sealed;
        }
    }

    /// Starts installing a key that passed the key check (created on first start, rebuilt
    /// from keepers, or restored from recovery shards).
    pub fn begin_unseal(&self) -> Result<Unsealing<'_>, IllegalTransition> {
        let mut phase = self.lock_phase();
        let from = *phase;
        if !matches!(from, Phase::Uninitialised | Phase::Sealed) {
            return Err(IllegalTransition {
                from,
                to: Phase::Unsealing,
            });
        }
        *phase = Phase::Unsealing;
        Ok(Unsealing {
            owner: self,
            from,
            finished: false,
        })
    }

    /// An operator seals Nexus: waits until no writer holds the gate and no key change is
    /// under way, then forgets the key in force and the previous one (each is zeroized as
    /// its last holder, a request still reading with it, lets go) and refuses every unseal
    /// until [`lift_seal`](Self::lift_seal). From `Sealed` too, so a Nexus still waiting for
    /// its keepers does not unseal either.
    pub async fn seal(&self, seal: Seal) -> Result<(), IllegalTransition> {
        let _writers = self.gate.write().await;
        let mut phase = self.lock_phase();
        let from = *phase;
        if !matches!(
            from,
            Phase::Sealed | Phase::Unsealing | Phase::Ready | Phase::Rekeying
        ) {
            return Err(IllegalTransition {
                from,
                to: Phase::SealedByOperator,
            });
        }
        *phase = Phase::SealedByOperator;
        self.current.store(None);
        self.previous.store(None);
        self.lock_progress().seal = Some(seal);
        drop(phase);
        // The keeper loop stops re-seeding keepers and waits for the seal to be lifted.
        self.wake_keeper_loop();
        Ok(())
    }

    /// Held by whoever changes the operator's seal, in the datastore or here, for the whole
    /// change: one seal, unseal or catch-up with the datastore at a time
    /// ([`super::operator_seal`]).
    pub(crate) async fn seal_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.seal_changes.lock().await
    }

    /// An operator lifts the seal: Nexus is sealed as after a start, and the keeper loop
    /// (woken here) rebuilds the key from the keepers.
    pub fn lift_seal(&self) -> Result<(), IllegalTransition> {
        let mut phase = self.lock_phase();
        if *phase != Phase::SealedByOperator {
            return Err(IllegalTransition {
                from: *phase,
                to: Phase::Sealed,
            });
        }
        *phase = Phase::Sealed;
        let mut progress = self.lock_progress();
        progress.seal = None;
        progress.waiting = Some(Waiting::SealLifted);
        drop(progress);
        drop(phase);
        self.wake_keeper_loop();
        Ok(())
    }

    /// Starts changing the key in force: waits until no writer holds the gate, then holds
    /// it until the returned ticket commits or is dropped.
    pub async fn begin_rotation(&self) -> Result<Rotating<'_>, IllegalTransition> {
        self.rotation_from(Phase::Ready).await
    }

    async fn rotation_from(&self, from: Phase) -> Result<Rotating<'_>, IllegalTransition> {
        let writers = self.gate.write().await;
        let mut phase = self.lock_phase();
        let illegal = IllegalTransition {
            from: *phase,
            to: Phase::Rotating,
        };
        if *phase != from {
            return Err(illegal);
        }
        let Some(old) = self.root() else {
            return Err(illegal);
        };
        *phase = Phase::Rotating;
        Ok(Rotating {
            owner: self,
            old,
            back_to: from,
            committed: false,
            _writers: writers,
        })
    }

    /// Starts changing the keeper set: only from ready, one at a time, and no rotation
    /// starts until the returned ticket finishes or is dropped (except its own,
    /// [`Rekeying::begin_rotation`]).
    pub fn begin_rekey(&self) -> Result<Rekeying<'_>, IllegalTransition> {
        let mut phase = self.lock_phase();
        if *phase != Phase::Ready {
            return Err(IllegalTransition {
                from: *phase,
                to: Phase::Rekeying,
            });
        }
        *phase = Phase::Rekeying;
        Ok(Rekeying { owner: self })
    }

    /// Every keeper holds a shard of the key in force: the previous key is forgotten.
    pub fn rotation_finished(&self) {
        self.previous.store(None);
    }

    /// A writer's hold on the key: waits while the key changes, then keeps it from changing
    /// until dropped.
    pub async fn write(&self) -> Result<WritePermit<'_>, NotReady> {
        let gate = self.gate.read().await;
        let current = self.current.load_full().ok_or_else(|| self.not_ready())?;
        Ok(WritePermit {
            current,
            _gate: gate,
        })
    }

    /// Wakes the keeper loop at once: to re-seed keepers after a rotation here, or to
    /// fetch a key another replica rotated to.
    pub fn wake_keeper_loop(&self) {
        self.wake.notify_one();
    }

    /// Completes when [`wake_keeper_loop`](Self::wake_keeper_loop) is called.
    pub async fn keeper_loop_woken(&self) {
        self.wake.notified().await;
    }

    /// The recovery shards submitted so far (break-glass), in memory only; one restore
    /// at a time.
    pub(crate) async fn recovery(&self) -> tokio::sync::MutexGuard<'_, Vec<Shard>> {
        self.recovery.lock().await
    }

    /// The status as `/v1/status` reports it.
    pub fn status(&self) -> StatusResponse {
        let phase = self.phase();
        let state = match phase {
            Phase::Uninitialised => SealState::Uninitialized,
            Phase::Sealed | Phase::SealedByOperator | Phase::Unsealing => SealState::Sealed,
            Phase::Ready | Phase::Rotating | Phase::Rekeying => SealState::Ready,
        };
        let progress = self.lock_progress();
        let operator_seal = progress.seal.as_ref().map(Seal::to_status);
        let message = match (&operator_seal, state) {
            (Some(seal), _) => format!(
                "sealed by an operator ({}) at {}; `spike operator unseal` (the superuser) brings it back",
                seal.by, seal.at
            ),
            (None, SealState::Ready) => String::new(),
            (None, _) => progress
                .waiting
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        };
        drop(progress);
        StatusResponse {
            initialized: phase != Phase::Uninitialised,
            state,
            keepers: KeeperStatus {
                total: self.keepers.load(Ordering::Relaxed),
                reachable: self.reachable.load(Ordering::Relaxed),
                threshold: self.threshold(),
                generation: self.generation(),
            },
            message,
            operator_seal,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// A key being installed ([`Phase::Unsealing`]). Dropped unfinished (its policies did not
/// load), the lifecycle returns to where it was.
#[derive(Debug)]
pub struct Unsealing<'a> {
    owner: &'a Lifecycle,
    from: Phase,
    finished: bool,
}

impl Unsealing<'_> {
    /// The key is in force: Nexus is ready. Sealed writes are fenced with `fence`, the
    /// key-check value stored for `root` (if one is stored yet). Refused, and `root`
    /// dropped, if an operator sealed Nexus meanwhile.
    pub fn finish(
        mut self,
        root: RootKey,
        fence: Option<Vec<u8>>,
    ) -> Result<Arc<RootKey>, IllegalTransition> {
        let owner = self.owner;
        let mut phase = owner.lock_phase();
        if *phase != Phase::Unsealing {
            self.finished = true;
            return Err(IllegalTransition {
                from: *phase,
                to: Phase::Ready,
            });
        }
        let root = Arc::new(root);
        owner.current.store(Some(Arc::new(Current {
            root: root.clone(),
            fence,
        })));
        owner.previous.store(None);
        *phase = Phase::Ready;
        drop(phase);
        owner.lock_progress().waiting = None;
        self.finished = true;
        Ok(root)
    }
}

impl Drop for Unsealing<'_> {
    fn drop(&mut self) {
        let mut phase = self.owner.lock_phase();
        // Unless an operator sealed Nexus meanwhile, which stands.
        if !self.finished && *phase == Phase::Unsealing {
            *phase = self.from;
        }
    }
}

/// A key change in progress ([`Phase::Rotating`]), holding the write gate. Dropped
/// uncommitted, the key in force stays.
#[derive(Debug)]
pub struct Rotating<'a> {
    owner: &'a Lifecycle,
    old: Arc<RootKey>,
    /// Where it returns: ready, or rekeying for a rekey's own rotation.
    back_to: Phase,
    committed: bool,
    _writers: RwLockWriteGuard<'a, ()>,
}

impl Rotating<'_> {
    /// The key being replaced.
    pub fn old(&self) -> &Arc<RootKey> {
        &self.old
    }

    /// `new` is in force, its records fenced with `fence` (its stored key-check value);
    /// the replaced key stays as [`Lifecycle::previous`] until the rotation is finished.
    pub fn commit(mut self, new: RootKey, fence: Vec<u8>) -> Arc<RootKey> {
        let new = Arc::new(new);
        let owner = self.owner;
        let mut phase = owner.lock_phase();
        owner.previous.store(Some(self.old.clone()));
        owner.current.store(Some(Arc::new(Current {
            root: new.clone(),
            fence: Some(fence),
        })));
        *phase = self.back_to;
        self.committed = true;
        new
    }
}

impl Drop for Rotating<'_> {
    fn drop(&mut self) {
        if !self.committed {
            *self.owner.lock_phase() = self.back_to;
        }
    }
}

/// A keeper set change in progress ([`Phase::Rekeying`]). Dropped unfinished, the keeper
/// set stays and Nexus is ready again (unless an operator sealed it meanwhile).
#[derive(Debug)]
pub struct Rekeying<'a> {
    owner: &'a Lifecycle,
}

impl Rekeying<'_> {
    /// The rekey's own rotation (`--new-root-key`): waits for writers, then changes the key
    /// as [`Lifecycle::begin_rotation`] does, returning to rekeying.
    pub async fn begin_rotation(&self) -> Result<Rotating<'_>, IllegalTransition> {
        self.owner.rotation_from(Phase::Rekeying).await
    }

    /// The new keeper set is stored: in force here, and Nexus is ready.
    pub fn finish(self, generation: u64, keepers: usize, threshold: u8) {
        self.owner.set_keeper_set(generation, keepers, threshold);
        // Drop returns the phase to ready.
    }
}

impl Drop for Rekeying<'_> {
    fn drop(&mut self) {
        let mut phase = self.owner.lock_phase();
        // Unless an operator sealed Nexus meanwhile, which stands.
        if *phase == Phase::Rekeying {
            *phase = Phase::Ready;
        }
    }
}

/// A writer's hold on the key in force: the key cannot change until it is dropped.
#[derive(Debug)]
pub struct WritePermit<'a> {
    current: Arc<Current>,
    _gate: RwLockReadGuard<'a, ()>,
}

impl WritePermit<'_> {
    /// The key to seal under.
    pub fn root(&self) -> &Arc<RootKey> {
        &self.current.root
    }

    /// The key-check value the datastore must still hold for the write to commit.
    pub fn fence(&self) -> Option<&[u8]> {
        self.current.fence.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use nexus_api::model::SealState;
    use nexus_crypto::{CryptoError, RootKey};

    use super::*;

    fn key() -> Result<RootKey, CryptoError> {
        RootKey::generate()
    }

    fn copy(key: &RootKey) -> RootKey {
        RootKey::from_bytes(*key.expose_secret())
    }

    fn illegal(from: Phase, to: Phase) -> IllegalTransition {
        IllegalTransition { from, to }
    }

    #[tokio::test]
    async fn first_start_goes_from_uninitialised_through_unsealing_to_ready()
    -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        assert_eq!(life.phase(), Phase::Uninitialised);
        assert_eq!(life.status().state, SealState::Uninitialized);
        assert_eq!(life.status().message, "starting");
        assert!(matches!(life.require_root(), Err(NotReady::Sealed(Some(m))) if m == "starting"));
        assert_eq!(
            life.begin_rotation().await.map(|_| ()),
            Err(illegal(Phase::Uninitialised, Phase::Rotating))
        );

        let unsealing = life.begin_unseal().expect("legal");
        assert_eq!(life.phase(), Phase::Unsealing);
        assert_eq!(
            life.begin_unseal().map(|_| ()),
            Err(illegal(Phase::Unsealing, Phase::Unsealing)),
            "one unseal at a time"
        );
        let root = key()?;
        let expected = copy(&root);
        unsealing
            .finish(root, Some(vec![7; 4]))
            .expect("not sealed meanwhile");
        assert_eq!(life.phase(), Phase::Ready);
        assert!(life.root().is_some_and(|r| *r == expected));
        let status = life.status();
        assert_eq!((status.state, status.initialized), (SealState::Ready, true));
        assert_eq!(status.message, "");
        assert_eq!(
            life.begin_unseal().map(|_| ()),
            Err(illegal(Phase::Ready, Phase::Unsealing)),
            "a ready Nexus is never unsealed again"
        );
        let permit = life.write().await.expect("ready");
        assert_eq!(permit.fence(), Some([7u8; 4].as_slice()));
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_unseal_returns_to_sealed_with_its_reason() -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        life.record_found();
        assert_eq!(life.phase(), Phase::Sealed);
        assert_eq!(life.status().state, SealState::Sealed);
        assert!(life.status().initialized);
        drop(life.begin_unseal().expect("legal"));
        assert_eq!(life.phase(), Phase::Sealed, "dropped unfinished: back");
        life.wait_for(Waiting::ShardsDoNotRebuild(2));
        assert!(life.status().message.contains("do not rebuild"));
        assert!(life.root().is_none());
        assert!(life.write().now_or_never().is_some_and(|w| w.is_err()));
        life.record_found();
        assert_eq!(life.phase(), Phase::Sealed, "never back to uninitialised");
        life.begin_unseal()
            .expect("legal")
            .finish(key()?, None)
            .expect("not sealed meanwhile");
        life.record_found();
        assert_eq!(life.phase(), Phase::Ready);
        Ok(())
    }

    #[tokio::test]
    async fn rotation_holds_writers_keeps_readers_and_remembers_the_previous_key()
    -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        let old = key()?;
        life.begin_unseal()
            .expect("legal")
            .finish(copy(&old), None)
            .expect("not sealed meanwhile");

        // An aborted rotation changes nothing.
        drop(life.begin_rotation().await.expect("legal"));
        assert_eq!(life.phase(), Phase::Ready);
        assert!(life.root().is_some_and(|r| *r == old));

        let rotating = life.begin_rotation().await.expect("legal");
        assert_eq!(life.phase(), Phase::Rotating);
        assert!(*rotating.old().as_ref() == old);
        assert!(life.root().is_some_and(|r| *r == old), "readers go on");
        assert!(life.write().now_or_never().is_none(), "writers wait");
        assert!(
            life.begin_rotation().now_or_never().is_none(),
            "a second rotation waits"
        );
        assert_eq!(
            life.begin_unseal().map(|_| ()),
            Err(illegal(Phase::Rotating, Phase::Unsealing))
        );
        let new = key()?;
        rotating.commit(copy(&new), vec![9; 4]);
        assert_eq!(life.phase(), Phase::Ready);
        assert!(life.root().is_some_and(|r| *r == new));
        assert!(life.previous().is_some_and(|p| *p == old));
        let permit = life
            .write()
            .now_or_never()
            .expect("not held")
            .expect("ready");
        assert_eq!(permit.fence(), Some([9u8; 4].as_slice()));
        drop(permit);
        life.rotation_finished();
        assert!(life.previous().is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_writer_holds_off_a_rotation() -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        life.begin_unseal()
            .expect("legal")
            .finish(key()?, None)
            .expect("not sealed meanwhile");
        let permit = life.write().await.expect("ready");
        assert!(life.begin_rotation().now_or_never().is_none());
        drop(permit);
        assert!(life.begin_rotation().now_or_never().is_some());
        Ok(())
    }

    #[tokio::test]
    async fn a_rekey_is_one_at_a_time_keeps_serving_and_holds_off_other_rotations()
    -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        assert_eq!(
            life.begin_rekey().map(|_| ()),
            Err(illegal(Phase::Uninitialised, Phase::Rekeying)),
            "no key, no rekey"
        );
        life.record_found();
        assert_eq!(
            life.begin_rekey().map(|_| ()),
            Err(illegal(Phase::Sealed, Phase::Rekeying))
        );
        let old = key()?;
        life.begin_unseal()
            .expect("legal")
            .finish(copy(&old), Some(vec![7; 4]))
            .expect("not sealed meanwhile");

        // Aborted: nothing changes.
        drop(life.begin_rekey().expect("legal"));
        assert_eq!(life.phase(), Phase::Ready);
        assert_eq!(life.status().keepers.generation, 0);

        let rekeying = life.begin_rekey().expect("legal");
        assert_eq!(life.phase(), Phase::Rekeying);
        assert_eq!(life.status().state, SealState::Ready, "serving meanwhile");
        assert!(life.root().is_some_and(|r| *r == old));
        assert!(life.write().now_or_never().is_some_and(|w| w.is_ok()));
        assert_eq!(
            life.begin_rekey().map(|_| ()),
            Err(illegal(Phase::Rekeying, Phase::Rekeying)),
            "one rekey at a time"
        );
        assert_eq!(
            life.begin_rotation().await.map(|_| ()),
            Err(illegal(Phase::Rekeying, Phase::Rotating)),
            "no rotation beside a rekey"
        );
        // Its own rotation returns to rekeying, aborted or committed.
        drop(rekeying.begin_rotation().await.expect("legal"));
        assert_eq!(life.phase(), Phase::Rekeying);
        let rotating = rekeying.begin_rotation().await.expect("legal");
        assert_eq!(life.phase(), Phase::Rotating);
        assert_eq!(
            life.begin_rekey().map(|_| ()),
            Err(illegal(Phase::Rotating, Phase::Rekeying))
        );
        let new = key()?;
        rotating.commit(copy(&new), vec![9; 4]);
        assert_eq!(life.phase(), Phase::Rekeying);
        assert!(life.previous().is_some_and(|p| *p == old));
        rekeying.finish(1, 4, 3);
        assert_eq!(life.phase(), Phase::Ready);
        let status = life.status();
        assert_eq!(
            (
                status.keepers.generation,
                status.keepers.total,
                status.keepers.threshold
            ),
            (1, 4, 3)
        );
        assert!(life.root().is_some_and(|r| *r == new));
        Ok(())
    }

    #[tokio::test]
    async fn a_seal_during_a_rekey_stands_when_the_rekey_ends() -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        life.begin_unseal()
            .expect("legal")
            .finish(key()?, None)
            .expect("not sealed meanwhile");
        let rekeying = life.begin_rekey().expect("legal");
        life.seal(operator()).await.expect("legal while rekeying");
        assert!(
            rekeying.begin_rotation().await.is_err(),
            "no key to rotate once sealed"
        );
        drop(rekeying);
        assert_eq!(life.phase(), Phase::SealedByOperator, "the seal stands");
        assert!(life.root().is_none());
        Ok(())
    }

    fn operator() -> Seal {
        Seal {
            by: "spiffe://td/spike/pilot/role/superuser".into(),
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        }
    }

    #[tokio::test]
    async fn an_operator_seal_drops_the_key_and_refuses_every_unseal_until_lifted()
    -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        life.begin_unseal()
            .expect("legal")
            .finish(key()?, Some(vec![7; 4]))
            .expect("not sealed meanwhile");
        // The key's memory is freed (and zeroized, `RootKey` is `ZeroizeOnDrop`) once its
        // last holder lets go: none here.
        let held = Arc::downgrade(&life.root().expect("ready"));
        assert!(life.keeper_loop_woken().now_or_never().is_none());

        life.seal(operator()).await.expect("legal");
        assert_eq!(life.phase(), Phase::SealedByOperator);
        assert!(held.upgrade().is_none(), "the root key is gone from memory");
        assert!(life.root().is_none() && life.previous().is_none());
        assert!(
            life.keeper_loop_woken().now_or_never().is_some(),
            "the keeper loop is told to stop re-seeding"
        );
        assert_eq!(life.operator_seal(), Some(operator()));
        let status = life.status();
        assert_eq!(
            (status.state, status.initialized),
            (SealState::Sealed, true)
        );
        let seal = status.operator_seal.expect("who sealed");
        assert_eq!(seal.by, "spiffe://td/spike/pilot/role/superuser");
        assert_eq!(seal.at, "2024-10-04T00:00:00.000Z");
        assert!(
            status.message.starts_with(
                "sealed by an operator (spiffe://td/spike/pilot/role/superuser) at 2024-10-04T00:00:00.000Z"
            ),
            "{}",
            status.message
        );
        assert_eq!(
            life.require_root().map(|_| ()),
            Err(NotReady::SealedByOperator {
                by: seal.by,
                at: seal.at
            })
        );
        assert!(life.write().now_or_never().is_some_and(|w| w.is_err()));
        let sealed = Phase::SealedByOperator;
        assert_eq!(
            life.begin_unseal().map(|_| ()),
            Err(illegal(sealed, Phase::Unsealing)),
            "neither keepers nor recovery shards unseal a Nexus an operator sealed"
        );
        assert_eq!(
            life.begin_rotation().await.map(|_| ()),
            Err(illegal(sealed, Phase::Rotating))
        );
        assert_eq!(life.seal(operator()).await, Err(illegal(sealed, sealed)));
        life.record_found();
        assert_eq!(life.phase(), sealed, "a found record changes nothing");

        life.lift_seal().expect("legal");
        assert_eq!(life.phase(), Phase::Sealed);
        assert!(
            life.keeper_loop_woken().now_or_never().is_some(),
            "woken to unseal"
        );
        assert_eq!(life.operator_seal(), None);
        let status = life.status();
        assert_eq!(status.operator_seal, None);
        assert_eq!(
            status.message,
            "the operator's seal was lifted; unsealing from the keepers"
        );
        assert_eq!(
            life.lift_seal(),
            Err(illegal(Phase::Sealed, Phase::Sealed)),
            "nothing to lift"
        );
        life.begin_unseal()
            .expect("legal again")
            .finish(key()?, None)
            .expect("not sealed meanwhile");
        assert_eq!(life.phase(), Phase::Ready);
        Ok(())
    }

    #[tokio::test]
    async fn a_seal_waits_for_writers_and_rotations_and_wins_over_an_install()
    -> Result<(), CryptoError> {
        let life = Lifecycle::new(2, 3);
        assert_eq!(
            life.seal(operator()).await,
            Err(illegal(Phase::Uninitialised, Phase::SealedByOperator)),
            "no key record, nothing to seal"
        );

        // An install under way when the seal lands finds the phase changed and drops its
        // key; so does one that is abandoned.
        life.record_found();
        let unsealing = life.begin_unseal().expect("legal");
        life.seal(operator()).await.expect("legal while unsealing");
        assert_eq!(
            unsealing.finish(key()?, None).map(|_| ()),
            Err(illegal(Phase::SealedByOperator, Phase::Ready))
        );
        assert_eq!(life.phase(), Phase::SealedByOperator);
        assert!(life.root().is_none());
        life.lift_seal().expect("legal");
        let unsealing = life.begin_unseal().expect("legal");
        life.seal(operator()).await.expect("legal while unsealing");
        drop(unsealing);
        assert_eq!(life.phase(), Phase::SealedByOperator, "the seal stands");
        life.lift_seal().expect("legal");

        // From sealed (waiting for keepers): they are not asked any more.
        life.seal(operator()).await.expect("legal while sealed");
        life.lift_seal().expect("legal");

        life.begin_unseal()
            .expect("legal")
            .finish(key()?, None)
            .expect("not sealed meanwhile");
        let permit = life.write().await.expect("ready");
        assert!(
            life.seal(operator()).now_or_never().is_none(),
            "a seal waits for the writer in progress"
        );
        drop(permit);
        let rotating = life.begin_rotation().await.expect("legal");
        assert!(
            life.seal(operator()).now_or_never().is_none(),
            "a seal waits for a key change in progress"
        );
        drop(rotating);
        life.seal(operator())
            .now_or_never()
            .expect("nothing holds the gate")
            .expect("legal");
        assert_eq!(life.phase(), Phase::SealedByOperator);
        Ok(())
    }
}
