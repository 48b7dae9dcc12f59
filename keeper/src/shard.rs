//! The one shard a keeper holds: 32 bytes in memory, never on disk, zeroized when replaced or
//! dropped.

use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::authz::Grant;

/// Length of a shard's value (one byte per byte of the root key).
pub const SHARD_LEN: usize = nexus_api::model::SHARD_LEN;

/// A slot holding at most one shard.
#[derive(Default)]
pub struct ShardSlot {
    value: Mutex<Option<Zeroizing<[u8; SHARD_LEN]>>>,
}

impl std::fmt::Debug for ShardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardSlot([REDACTED])")
    }
}

impl ShardSlot {
    /// Stores `value` for an authorised caller, zeroizing any shard held before.
    pub fn store(&self, _grant: &Grant, value: Zeroizing<[u8; SHARD_LEN]>) {
        let mut slot = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Replacing the Option drops the old Zeroizing value, which wipes it.
        *slot = Some(value);
    }

    /// A copy of the held shard, if any, for an authorised caller.
    pub fn get(&self, _grant: &Grant) -> Option<Zeroizing<[u8; SHARD_LEN]>> {
        let slot = self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.as_ref().map(|v| Zeroizing::new(**v))
    }

    /// Whether a shard is held.
    pub fn is_full(&self) -> bool {
        self.value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}
