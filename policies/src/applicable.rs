//! Which policies apply to a caller, remembered per caller.
//!
//! An access check needs the policies whose SPIFFE-ID pattern matches the caller; finding
//! them means trying every policy's caller pattern, so with 1,000 policies a check costs
//! 1,000 regex matches. A caller's applicable policies depend only on the caller and the
//! set, and a [`PolicySet`](crate::PolicySet) never changes once built (a change builds a
//! new set), so the answer is computed once per caller and kept with the set: it is dropped
//! with it, and so can never outlive a policy change, here or on another replica (the
//! replica installs a new set when it learns of the change).
//!
//! The memory is bounded: past [`MAX_CALLERS`] distinct callers the map is emptied and
//! starts again, so a flood of distinct identities costs at worst the uncached scan.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Distinct callers remembered per set before the map is emptied.
pub const MAX_CALLERS: usize = 4096;

/// Indices (into the set's policy list) of the policies that apply to a caller.
pub(crate) type Indices = Arc<[usize]>;

/// Per-caller applicable policies of one set. Empty when cloned: a clone is made for a
/// derived set, whose policies and so answers differ.
#[derive(Debug, Default)]
pub(crate) struct ApplicableCache {
    by_caller: RwLock<HashMap<Box<str>, Indices>>,
}

impl Clone for ApplicableCache {
    fn clone(&self) -> Self {
        ApplicableCache::default()
    }
}

impl ApplicableCache {
    /// The policies that apply to `caller`, computing them with `scan` the first time.
    pub(crate) fn get_or_scan(&self, caller: &str, scan: impl FnOnce() -> Vec<usize>) -> Indices {
        if let Some(found) = self
            .by_caller
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(caller)
        {
            return found.clone();
        }
        let found: Indices = scan().into();
        let mut map = self
            .by_caller
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CALLERS {
            map.clear();
        }
        map.insert(caller.into(), found.clone());
        found
    }

    /// How many callers are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_caller
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
