//! The rows of recent secret reads, kept in memory so that reading an unchanged secret again
//! costs no database round trip (on SQLite, a hand-off to the driver's worker thread and
//! back, which dominated a read's cost: see `docs/performance.md`).
//!
//! Only what the datastore holds is kept: the sealed record (wrapped data key and
//! ciphertext) and the version's state, never plaintext. A hit is opened with the root key
//! per request, as a miss is, and expiry is judged at each read from the stored deletion
//! time.
//!
//! # Staying correct
//!
//! - **SQLite only**, which this process alone writes (as the policy cache assumes, see
//!   [`crate::policy::sync`]). Replicas on PostgreSQL could not learn of each other's writes
//!   before acknowledging them, so they read the database every time.
//! - **Every write empties it.** Each write transaction of the store comes with a
//!   [`Written`] ([`Store::begin_write`](super::Store::begin_write), the group-commit
//!   writer), which empties the cache once the transaction has ended, committed or not,
//!   before the write is acknowledged. Emptying all of it, not one path, keeps the rule
//!   simple for writes that touch many paths (a rotation re-wraps every record; pruning,
//!   `max_versions`, destroy).
//! - **A miss stores only what no write could have changed**: a read notes the cache's
//!   generation before it reads the database and stores its row only if no write ended
//!   since. A row read before a write committed can then never be stored after that write
//!   emptied the cache.
//! - **Bounded**: at most [`CAPACITY`] rows; when full, misses are not stored until the next
//!   write empties it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Rows kept at most (each a few hundred bytes: a path and a sealed record).
pub const CAPACITY: usize = 10_000;

/// One read's row: the version asked for, if the secret exists (`None`: no such secret).
pub(super) type Found = Option<VersionRow>;

/// A secret's version as stored, before expiry and deletion are judged.
#[derive(Debug, Clone)]
pub(super) struct VersionRow {
    /// The version found (`None`: no such version, or no current one).
    pub version: Option<i64>,
    pub expires_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub wrapped_key: Option<Vec<u8>>,
    pub ciphertext: Option<Vec<u8>>,
}

/// Sealed rows by path and version asked for (0: the current one).
#[derive(Debug, Default)]
pub(super) struct ReadCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Incremented by every write that ends.
    generation: u64,
    /// Per path, the versions read (a path is read as few versions: a `Vec` suffices).
    rows: HashMap<Box<str>, Vec<(i64, Arc<Found>)>>,
    len: usize,
}

impl ReadCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here can panic half-way through an update: a poisoned lock is still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row read for `path` at `wanted`, if kept.
    pub fn get(&self, path: &str, wanted: i64) -> Option<Arc<Found>> {
        let inner = self.lock();
        let versions = inner.rows.get(path)?;
        versions
            .iter()
            .find(|(version, _)| *version == wanted)
            .map(|(_, found)| found.clone())
    }

    /// What a read notes before it reads the database (see [`insert`](Self::insert)).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `found`, read for `path` at `wanted` by a read that began at `generation`,
    /// unless a write has ended since (it may have changed the row after it was read) or
    /// the cache is full.
    pub fn insert(&self, generation: u64, path: &str, wanted: i64, found: Arc<Found>) {
        let mut inner = self.lock();
        if inner.generation != generation || inner.len >= CAPACITY {
            return;
        }
        let versions = inner.rows.entry(path.into()).or_default();
        if versions.iter().any(|(version, _)| *version == wanted) {
            return;
        }
        versions.push((wanted, found));
        inner.len += 1;
    }

    /// A write has ended: nothing kept may be current any more.
    fn written(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.clear();
        inner.len = 0;
    }

    /// How many rows are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

/// Held for as long as a write transaction runs: empties the cache when dropped, whatever
/// became of the transaction. Keep it bound (`_written`, not `_`) until the transaction has
/// ended.
#[must_use = "the cache is emptied when this is dropped: hold it until the write has ended"]
#[derive(Debug)]
pub(super) struct Written(Option<Arc<ReadCache>>);

impl Written {
    /// For a write on a store whose cache is `cache` (`None`: no cache).
    pub fn new(cache: Option<&Arc<ReadCache>>) -> Written {
        Written(cache.cloned())
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if let Some(cache) = &self.0 {
            cache.written();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64) -> Arc<Found> {
        Arc::new(Some(VersionRow {
            version: Some(version),
            expires_at: None,
            deleted_at: None,
            wrapped_key: Some(vec![1; 8]),
            ciphertext: Some(vec![2; 8]),
        }))
    }

    fn version(found: &Found) -> Option<i64> {
        found.as_ref().and_then(|row| row.version)
    }

    #[test]
    fn rows_are_kept_per_path_and_version_until_a_write_ends() {
        let cache = Arc::new(ReadCache::default());
        let g = cache.generation();
        cache.insert(g, "a", 0, row(3));
        cache.insert(g, "a", 2, row(2));
        cache.insert(g, "b", 0, Arc::new(None));
        assert_eq!(cache.get("a", 0).map(|f| version(&f)), Some(Some(3)));
        assert_eq!(cache.get("a", 2).map(|f| version(&f)), Some(Some(2)));
        assert_eq!(cache.get("b", 0).map(|f| f.is_none()), Some(true));
        assert!(cache.get("a", 1).is_none());
        assert!(cache.get("c", 0).is_none());

        let written = Written::new(Some(&cache));
        assert_eq!(cache.len(), 3, "a write in progress leaves the cache alone");
        drop(written);
        assert_eq!(cache.len(), 0);
        assert!(cache.get("a", 0).is_none());
    }

    #[test]
    fn a_row_read_before_a_write_ended_is_not_kept() {
        let cache = Arc::new(ReadCache::default());
        let before = cache.generation();
        drop(Written::new(Some(&cache)));
        cache.insert(before, "a", 0, row(1));
        assert!(cache.get("a", 0).is_none());
        let after = cache.generation();
        cache.insert(after, "a", 0, row(2));
        assert_eq!(cache.get("a", 0).map(|f| version(&f)), Some(Some(2)));
    }

    #[test]
    fn the_cache_stops_growing_at_its_capacity() {
        let cache = ReadCache::default();
        let g = cache.generation();
        for i in 0..CAPACITY + 10 {
            cache.insert(g, &format!("p{i}"), 0, row(1));
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get(&format!("p{}", CAPACITY + 5), 0).is_none());
        assert!(cache.get("p0", 0).is_some());
    }
}
