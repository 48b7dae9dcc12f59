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
//!   [`Written`] (inside a [`WriteTransaction`] from
//!   [`Store::begin_write`](super::Store::begin_write) and a write run alone; the
//!   group-commit writer's own), which empties the cache once the transaction has ended,
//!   committed or not, before the write is acknowledged. Emptying all of it, not one path,
//!   keeps the rule simple for writes that touch many paths (a rotation re-wraps every
//!   record; pruning, `max_versions`, destroy).
//! - **A write that may still be committing suspends it.** A write is told it has ended
//!   ([`Written::ended`]) once its `COMMIT` or `ROLLBACK` has returned. A `Written` dropped
//!   before that (its caller gave up, its request timed out, an error returned early, a
//!   panic) may leave a `COMMIT` running on sqlx's worker thread after the cache was
//!   emptied, and a read meanwhile would keep the row from before it. So the cache then
//!   serves and keeps nothing until a task has taken SQLite's write lock (`BEGIN
//!   IMMEDIATE`, then `ROLLBACK`): a transaction that held the lock has ended by then, and
//!   the cache is emptied once more and resumes. If that task cannot run (no runtime, the
//!   pool closed), the cache stays suspended: reads go to the database.
//! - **A miss stores only what no write could have changed**: a read notes the cache's
//!   generation before it reads the database and stores its row only if no write ended
//!   since. A row read before a write committed can then never be stored after that write
//!   emptied the cache.
//! - **Bounded**: at most [`CAPACITY`] rows; when full, misses are not stored until the next
//!   write empties it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common_sql::Backend;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};

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
#[derive(Debug)]
pub(super) struct ReadCache {
    inner: Mutex<Inner>,
    /// The SQLite pool whose writes empty this cache, for taking its write lock after a
    /// write that may still be committing.
    pool: AnyPool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Incremented by every write that ends.
    generation: u64,
    /// Per path, the versions read (a path is read as few versions: a `Vec` suffices).
    rows: HashMap<Box<str>, Vec<(i64, Arc<Found>)>>,
    len: usize,
    /// Writes dropped before they ended whose end is not yet known: while above zero, the
    /// cache serves and keeps nothing.
    suspended: usize,
    hits: u64,
    misses: u64,
    suspensions: u64,
}

impl Inner {
    /// Forgets every row; reads that began before this store nothing.
    fn empty(&mut self) {
        self.generation += 1;
        self.rows.clear();
        self.len = 0;
    }
}

/// What the cache has done since Nexus started, for its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the database (not kept, or the cache suspended).
    pub misses: u64,
    /// Writes dropped before they ended, each suspending the cache for a while.
    pub suspensions: u64,
    /// Rows kept now.
    pub rows: u64,
    /// Whether the cache is suspended now.
    pub suspended: bool,
}

impl ReadCache {
    /// An empty cache of the SQLite store on `pool`.
    pub fn new(pool: AnyPool) -> ReadCache {
        ReadCache {
            inner: Mutex::new(Inner::default()),
            pool,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here can panic half-way through an update: a poisoned lock is still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The row read for `path` at `wanted`, if kept.
    pub fn get(&self, path: &str, wanted: i64) -> Option<Arc<Found>> {
        let mut inner = self.lock();
        let found = if inner.suspended > 0 {
            None
        } else {
            inner.rows.get(path).and_then(|versions| {
                versions
                    .iter()
                    .find(|(version, _)| *version == wanted)
                    .map(|(_, found)| found.clone())
            })
        };
        match found {
            Some(_) => inner.hits += 1,
            None => inner.misses += 1,
        }
        found
    }

    /// Its counts since it was made.
    pub fn stats(&self) -> ReadCacheStats {
        let inner = self.lock();
        ReadCacheStats {
            hits: inner.hits,
            misses: inner.misses,
            suspensions: inner.suspensions,
            rows: u64::try_from(inner.len).unwrap_or(u64::MAX),
            suspended: inner.suspended > 0,
        }
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
        if inner.generation != generation || inner.suspended > 0 || inner.len >= CAPACITY {
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
        inner.empty();
    }

    /// A write was dropped before it ended: suspended (and emptied) until SQLite's write
    /// lock shows it is over.
    fn abandoned(self: &Arc<Self>) {
        {
            let mut inner = self.lock();
            inner.suspended += 1;
            inner.suspensions += 1;
            inner.empty();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = Arc::clone(self);
        runtime.spawn(async move {
            let mut pause = Duration::from_millis(50);
            loop {
                match common_sql::begin_write(&cache.pool, Backend::Sqlite).await {
                    Ok(tx) => {
                        if let Err(error) = tx.rollback().await {
                            tracing::debug!(%error, "read cache: ending its lock's transaction");
                        }
                        break;
                    }
                    // Closed at shutdown: stay suspended.
                    Err(_) if cache.pool.is_closed() => return,
                    // Still locked past the busy timeout, or the database unreachable: the
                    // cache stays suspended (reads go to the database) and tries again.
                    Err(error) => {
                        tracing::debug!(%error, "read cache: the write lock is not free yet");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let mut inner = cache.lock();
            inner.suspended -= 1;
            inner.empty();
        });
    }

    /// How many rows are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len
    }
}

/// Held for as long as a write transaction runs: empties the cache when dropped, and if
/// the transaction was not said to have [`ended`](Self::ended), suspends it until the
/// transaction is surely over (see the module docs). Keep it bound (not `_`) until then.
#[must_use = "the cache is emptied when this is dropped: hold it until the write has ended"]
#[derive(Debug)]
pub(super) struct Written {
    cache: Option<Arc<ReadCache>>,
    ended: bool,
}

impl Written {
    /// For a write on a store whose cache is `cache` (`None`: no cache).
    pub fn new(cache: Option<&Arc<ReadCache>>) -> Written {
        Written {
            cache: cache.cloned(),
            ended: false,
        }
    }

    /// The transaction's `COMMIT` or `ROLLBACK` has returned: nothing of it can still
    /// change the database.
    pub fn ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        match &self.cache {
            Some(cache) if self.ended => cache.written(),
            Some(cache) => cache.abandoned(),
            None => {}
        }
    }
}

/// A write transaction with its [`Written`]: committing or rolling it back says the write
/// has ended, so no write can forget to. Dropped unfinished (an early return, a panic, a
/// caller that gave up), its `Written` suspends the cache (see the module docs). Statements
/// run on it as on its connection.
pub(super) struct WriteTransaction<'c> {
    tx: Transaction<'c, Any>,
    written: Written,
}

impl<'c> WriteTransaction<'c> {
    /// `tx`, begun after `written` was made.
    pub fn new(tx: Transaction<'c, Any>, written: Written) -> Self {
        WriteTransaction { tx, written }
    }

    /// Commits; once `COMMIT` has returned, the write has ended.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let WriteTransaction { tx, mut written } = self;
        tx.commit().await?;
        written.ended();
        Ok(())
    }

    /// Rolls back; once `ROLLBACK` has returned, the write has ended.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let WriteTransaction { tx, mut written } = self;
        tx.rollback().await?;
        written.ended();
        Ok(())
    }
}

impl std::ops::Deref for WriteTransaction<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTransaction<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use sqlx::any::AnyPoolOptions;

    use super::*;

    /// A cache on a lazy pool (made in a runtime, as sqlx requires).
    fn cache() -> Arc<ReadCache> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect_lazy("sqlite::memory:")
            .expect("a lazy pool");
        Arc::new(ReadCache::new(pool))
    }

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

    fn ended(cache: &Arc<ReadCache>) {
        let mut written = Written::new(Some(cache));
        written.ended();
    }

    #[tokio::test]
    async fn rows_are_kept_per_path_and_version_until_a_write_ends() {
        let cache = cache();
        let g = cache.generation();
        cache.insert(g, "a", 0, row(3));
        cache.insert(g, "a", 2, row(2));
        cache.insert(g, "b", 0, Arc::new(None));
        assert_eq!(cache.get("a", 0).map(|f| version(&f)), Some(Some(3)));
        assert_eq!(cache.get("a", 2).map(|f| version(&f)), Some(Some(2)));
        assert_eq!(cache.get("b", 0).map(|f| f.is_none()), Some(true));
        assert!(cache.get("a", 1).is_none());
        assert!(cache.get("c", 0).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.rows), (3, 2, 3));

        let mut written = Written::new(Some(&cache));
        assert_eq!(cache.len(), 3, "a write in progress leaves the cache alone");
        written.ended();
        drop(written);
        assert_eq!(cache.len(), 0);
        assert!(cache.get("a", 0).is_none());
    }

    #[tokio::test]
    async fn a_row_read_before_a_write_ended_is_not_kept() {
        let cache = cache();
        let before = cache.generation();
        ended(&cache);
        cache.insert(before, "a", 0, row(1));
        assert!(cache.get("a", 0).is_none());
        let after = cache.generation();
        cache.insert(after, "a", 0, row(2));
        assert_eq!(cache.get("a", 0).map(|f| version(&f)), Some(Some(2)));
    }

    #[tokio::test]
    async fn the_cache_stops_growing_at_its_capacity() {
        let cache = cache();
        let g = cache.generation();
        for i in 0..CAPACITY + 10 {
            cache.insert(g, &format!("p{i}"), 0, row(1));
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get(&format!("p{}", CAPACITY + 5), 0).is_none());
        assert!(cache.get("p0", 0).is_some());
    }

    #[tokio::test]
    async fn a_write_dropped_before_it_ended_suspends_the_cache_until_the_write_lock_is_free() {
        let cache = cache();
        let g = cache.generation();
        cache.insert(g, "a", 0, row(1));
        // The database's one connection is in a write transaction, as an abandoned write's
        // would be while its COMMIT is still running.
        let held = common_sql::begin_write(&cache.pool, Backend::Sqlite)
            .await
            .expect("takes the write lock");
        drop(Written::new(Some(&cache)));
        assert!(cache.get("a", 0).is_none(), "emptied");
        let g = cache.generation();
        cache.insert(g, "a", 0, row(2));
        assert!(
            cache.get("a", 0).is_none(),
            "nothing is kept while suspended"
        );
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            cache.lock().suspended,
            1,
            "still suspended while the lock is held"
        );
        let stats = cache.stats();
        assert!(stats.suspended);
        assert_eq!((stats.suspensions, stats.rows), (1, 0));

        held.commit().await.expect("ends the transaction");
        // The suspension ends once the cache's task has taken and released the lock.
        let resumed = tokio::time::timeout(Duration::from_secs(10), async {
            while cache.lock().suspended > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(resumed.is_ok(), "the cache resumes once the lock is free");
        let g = cache.generation();
        cache.insert(g, "a", 0, row(3));
        assert_eq!(cache.get("a", 0).map(|f| version(&f)), Some(Some(3)));
    }
}
