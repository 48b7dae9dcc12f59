//! Connection budgets: a cap per source ([`PerSource`]) beside a listener's overall cap (a
//! semaphore), and the [`Slot`] a served connection carries, which gives everything back
//! when the connection is dropped.
//!
//! The per-source counts only hold sources with a connection open: a count is removed when it
//! drops to zero, so the map is bounded by the connections served, not by every source seen.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;

/// Open connections per source (an IP address, a SPIFFE ID, a UID, a PID), at most `max`
/// each.
#[derive(Debug)]
pub struct PerSource<K> {
    max: usize,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone + Send + 'static> PerSource<K> {
    /// At most `max` connections per source (at least 1).
    pub fn new(max: usize) -> Self {
        PerSource {
            max: max.max(1),
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// One more connection for `key`, or `None` when it already has `max`.
    pub fn try_take(&self, key: K) -> Option<SourceGuard<K>> {
        let mut counts = lock(&self.counts);
        let open = counts.entry(key.clone()).or_insert(0);
        if *open >= self.max {
            return None;
        }
        *open += 1;
        Some(SourceGuard {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Connections `key` has open.
    pub fn count(&self, key: &K) -> usize {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }

    /// Sources with at least one connection open.
    pub fn sources(&self) -> usize {
        lock(&self.counts).len()
    }
}

/// One connection of a source ([`PerSource::try_take`]); dropping it gives the place back.
#[derive(Debug)]
pub struct SourceGuard<K: Eq + Hash> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash> Drop for SourceGuard<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(open) = counts.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A served connection's place in its listener's budgets: the overall permit, its places
/// per source, and one in the listener's `connections_open` gauge. All given back on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _sources: Vec<Box<dyn Send + Sync>>,
    open: Gauge,
}

impl Slot {
    /// A slot holding `permit` and counted in `open` until dropped.
    pub fn new(permit: OwnedSemaphorePermit, open: Gauge) -> Self {
        open.inc();
        Slot {
            _permit: permit,
            _sources: Vec::new(),
            open,
        }
    }

    /// The slot also holds `guard` (a [`SourceGuard`]).
    pub fn with<K: Eq + Hash + Send + Sync + 'static>(mut self, guard: SourceGuard<K>) -> Self {
        self._sources.push(Box::new(guard));
        self
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("sources", &self._sources.len())
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The maps hold only counters, consistent after every statement: a panic elsewhere while
/// holding the lock leaves nothing half-done, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    #[test]
    fn each_source_gets_its_own_cap_and_places_come_back_on_drop() {
        let per_ip = PerSource::new(2);
        let a1 = per_ip.try_take("a").expect("first");
        let a2 = per_ip.try_take("a").expect("second");
        assert!(per_ip.try_take("a").is_none(), "a third is refused");
        let b = per_ip.try_take("b").expect("b has its own places");
        assert_eq!(per_ip.count(&"a"), 2);
        drop(a1);
        let a3 = per_ip.try_take("a").expect("a freed place is reusable");
        drop((a2, a3, b));
        assert_eq!(
            per_ip.sources(),
            0,
            "sources without connections are forgotten"
        );
    }

    #[test]
    fn a_slot_gives_back_its_permit_its_sources_and_its_gauge() {
        let slots = Arc::new(Semaphore::new(1));
        let per_uid = PerSource::new(1);
        let open = Gauge::default();
        let permit = slots.clone().try_acquire_owned().expect("permit");
        let slot = Slot::new(permit, open.clone()).with(per_uid.try_take(1000u32).expect("uid"));
        assert_eq!(open.get(), 1);
        assert!(slots.clone().try_acquire_owned().is_err());
        assert!(per_uid.try_take(1000).is_none());
        drop(slot);
        assert_eq!(open.get(), 0);
        assert!(slots.try_acquire_owned().is_ok());
        assert!(per_uid.try_take(1000).is_some());
    }
}
