//! The shards a keeper holds: 32 bytes each, in memory only, never on disk, zeroized when
//! replaced, forgotten or dropped.
//!
//! One shard per generation of the keeper set. A rekey (`spike operator rekey`) stages the
//! next generation's shard beside the current one, so a Nexus killed in the middle of it
//! still finds the generation its datastore names; once the datastore has moved on, Nexus
//! tells the keeper to forget the older generations ([`ShardSlot::retain`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use zeroize::Zeroizing;

use crate::authz::Grant;

/// Length of a shard's value (one byte per byte of the root key).
pub const SHARD_LEN: usize = nexus_api::model::SHARD_LEN;

/// Generations held at most: the current one and a staged one, plus one left behind by a
/// rekey that died before it told the keeper to forget. A further one pushes out the lowest.
pub const MAX_GENERATIONS: usize = 3;

/// A slot holding at most one shard per generation, and at most [`MAX_GENERATIONS`].
#[derive(Default)]
pub struct ShardSlot {
    values: Mutex<BTreeMap<u64, Zeroizing<[u8; SHARD_LEN]>>>,
}

impl std::fmt::Debug for ShardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardSlot([REDACTED])")
    }
}

impl ShardSlot {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Zeroizing<[u8; SHARD_LEN]>>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` as `generation`'s shard for an authorised caller, zeroizing any shard
    /// of that generation held before (and the lowest generation, if too many are held).
    pub fn store(&self, _grant: &Grant, generation: u64, value: Zeroizing<[u8; SHARD_LEN]>) {
        let mut values = self.lock();
        // Replacing a value drops the old Zeroizing one, which wipes it.
        values.insert(generation, value);
        while values.len() > MAX_GENERATIONS {
            values.pop_first();
        }
    }

    /// A copy of `generation`'s shard, if held, for an authorised caller.
    pub fn get(&self, _grant: &Grant, generation: u64) -> Option<Zeroizing<[u8; SHARD_LEN]>> {
        self.lock().get(&generation).map(|v| Zeroizing::new(**v))
    }

    /// Forgets (zeroizing) the shards of every generation below `generation`, or with
    /// `exactly` of every generation but it; returns how many were forgotten.
    pub fn retain(&self, _grant: &Grant, generation: u64, exactly: bool) -> usize {
        let mut values = self.lock();
        let before = values.len();
        values.retain(|held, _| *held == generation || (!exactly && *held > generation));
        before - values.len()
    }

    /// Whether a shard is held.
    pub fn is_full(&self) -> bool {
        !self.lock().is_empty()
    }

    /// The generations held, lowest first.
    pub fn generations(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }
}
