//! Nexus's persistent state: the root key's public record, versioned secrets and policies,
//! in SQLite or PostgreSQL.
//!
//! The store never sees a plaintext or a key. Records arrive sealed ([`SealedRecord`]: a
//! wrapped data key and a ciphertext, both opaque bytes); paths and policy names stay in
//! plaintext so listing needs no decryption.
//!
//! # One implementation for two databases
//!
//! A single [`Store`] type and code path serves both backends over sqlx's `Any` driver;
//! `common_sql` does the connection setup (URL scheme, SQLite pragmas and a private database
//! file, migrations, `BEGIN IMMEDIATE`). The migrations are `migrations/sqlite` and
//! `migrations/postgres`: same tables and columns, each in its dialect. `tests/store.rs` runs
//! one suite against both databases. Times are unix milliseconds and version numbers 64-bit
//! signed integers, which `Any` decodes portably.
//!
//! # Concurrent writers
//!
//! Every write to a secret starts with a statement that locks the secret's row, and does
//! all its reading after that, inside the same transaction. On SQLite `BEGIN IMMEDIATE`
//! already serialises writers; on PostgreSQL (READ COMMITTED) the row lock does, so two
//! puts to one path never compute the same version and exactly one check-and-set wins.
//!
//! On SQLite, writes to secrets go through one writer task that commits the writes waiting
//! at that moment in one transaction, each under its own savepoint, with one fsync, on one
//! connection it keeps (`group_commit`): a write is answered only after its group's
//! commit, and one write's failure undoes that write alone. A new write operation takes
//! the same path by running its SQL inside [`Store::write`].
//!
//! # Several Nexus replicas on one database
//!
//! Several Nexus processes may share one PostgreSQL database. First-time initialisation runs
//! under a database-wide lock ([`Store::initialize_exclusively`]), so exactly one replica
//! creates the root key. Every policy change increments a generation counter in its own
//! transaction and, on PostgreSQL, announces it on a notification channel
//! (`crate::policy::sync` listens), so no replica keeps enforcing a policy another replica
//! changed. Secrets are not cached on PostgreSQL (the read cache is SQLite's alone), so they
//! need no invalidation across replicas.

mod error;
mod expiry;
mod group_commit;
mod keeper_set;
mod model;
mod operator_seal;
mod policies;
mod read_cache;
mod root_key;
mod rotation;
mod secret_metadata;
mod secrets;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use common_sql::PoolSettings;
use sqlx::{AnyConnection, AnyPool, Row};
use time::OffsetDateTime;

use read_cache::{ReadCache, WriteTransaction, Written};

pub use common_sql::Backend;
pub use error::{Corruption, Missing, StoreError};
pub use expiry::PrunedVersions;
pub use group_commit::MAX_GROUP;
pub use keeper_set::{ClaimOutcome, RekeyClaim, RekeyCommit, StoredKeeperSet};
pub use model::{
    KeyRecord, MetadataUpdate, PutVersion, SealedRecord, SecretMeta, StoredPolicy, StoredVersion,
    VersionMeta,
};
pub use operator_seal::{SEAL_NOTICE, SealOutcome, StoredSeal};
pub use policies::POLICY_CHANNEL;
pub use read_cache::ReadCacheStats;
pub use root_key::{InitError, Initialization};
pub use rotation::{RotateError, RotationRecord, WrappedRow};
pub use secrets::PathList;

/// PostgreSQL cancels a statement running longer than this: no query of Nexus's takes more
/// than milliseconds, so one that does is stuck (a lock held by a hung client, an
/// overloaded server) and the caller is better answered 503 than left hanging.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a database connection (reconnecting meanwhile if the
/// database is down) before it is answered 503. Short, so clients learn quickly.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// `migrations/{sqlite,postgres}/`, embedded (a new migration file goes in this list too; a
/// test checks it).
static MIGRATIONS: common_sql::Migrations = common_sql::embed_migrations![
    "0001_initial.sql",
    "0002_policy_generation.sql",
    "0003_root_key_rotation.sql",
    "0004_cipher_key.sql",
    "0005_operator_seal.sql",
    "0006_kv2_metadata.sql",
    "0007_keeper_set.sql",
    "0008_version_expiry.sql",
];

/// Handle to the Nexus datastore. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The writer task that commits concurrent writes together (SQLite only).
    group: Option<group_commit::GroupCommit>,
    /// Sealed rows of recent reads (SQLite only; see [`read_cache`]).
    cache: Option<Arc<ReadCache>>,
}

impl Store {
    /// Connects to `url` and brings the schema up to date, with the writer task (SQLite)
    /// under a supervisor of its own: [`Store::connect_supervised`] for a service, whose
    /// supervisor counts the writer's failures with its other tasks'.
    ///
    /// Accepted URLs are `sqlite://PATH` (the file is created, readable by its owner only,
    /// if missing) and `postgres://…` / `postgresql://…`. Any other scheme yields
    /// [`common_sql::SqlError::UnsupportedUrl`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_supervised(url, &common_process::Supervisor::new()).await
    }

    /// [`Store::connect`], with the writer task (SQLite, `group_commit`) run by
    /// `supervisor`: restarted if it fails, stopped by its shutdown.
    pub async fn connect_supervised(
        url: &str,
        supervisor: &common_process::Supervisor,
    ) -> Result<Store, StoreError> {
        let settings = PoolSettings {
            statement_timeout: Some(STATEMENT_TIMEOUT),
            acquire_timeout: Some(ACQUIRE_TIMEOUT),
        };
        let (pool, backend) = common_sql::connect_with(url, &MIGRATIONS, settings).await?;
        let (group, cache) = match backend {
            Backend::Sqlite => {
                let cache = Arc::new(ReadCache::new(pool.clone()));
                let group = group_commit::GroupCommit::start(pool.clone(), &cache, supervisor);
                (Some(group), Some(cache))
            }
            Backend::Postgres => (None, None),
        };
        Ok(Store {
            pool,
            backend,
            group,
            cache,
        })
    }

    /// Within a write transaction: the fence holds. Writes of sealed records (secret
    /// versions, policies, the cipher key) name the key-check value of the root key they are
    /// sealed under, and fail with [`StoreError::KeyChanged`] unless the stored value is
    /// still that one, so a replica that has not yet learnt of another's rotation cannot
    /// store a record under the retired key; and fail with [`StoreError::Sealed`] once an
    /// operator sealed Nexus, so no replica stores anything after a seal. On PostgreSQL the
    /// check takes a share lock that a rotation's update and a seal wait for. `None` (no
    /// key-check stored yet) checks nothing.
    async fn check_fence(
        &self,
        tx: &mut AnyConnection,
        fence: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        fence_holds(tx, self.backend, fence).await
    }

    /// The database this store is connected to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the read cache has done (`None` on PostgreSQL, which has none).
    pub fn read_cache_stats(&self) -> Option<ReadCacheStats> {
        self.cache.as_ref().map(|cache| cache.stats())
    }

    /// Closes every connection of the pool, waiting for checked-out ones to be returned.
    /// Later calls on any clone of this handle fail.
    pub async fn close(&self) {
        self.close_writer().await;
        self.pool.close().await;
    }

    /// Starts a transaction that will write (`BEGIN IMMEDIATE` on SQLite); its commit or
    /// rollback empties the read cache.
    async fn begin_write(&self) -> Result<WriteTransaction<'static>, StoreError> {
        let written = Written::new(self.cache.as_ref());
        let tx = common_sql::begin_write(&self.pool, self.backend).await?;
        Ok(WriteTransaction::new(tx, written))
    }
}

/// [`Store::check_fence`], for writes that run on the group-commit writer.
async fn fence_holds(
    tx: &mut AnyConnection,
    backend: Backend,
    fence: Option<&[u8]>,
) -> Result<(), StoreError> {
    let Some(expected) = fence else {
        return Ok(());
    };
    let lock = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "SELECT key_check, sealed_at FROM root_key WHERE id = 1{lock}"
    ))
    .fetch_optional(&mut *tx)
    .await?;
    let stored: Option<Vec<u8>> = row.as_ref().map(|r| r.try_get("key_check")).transpose()?;
    let sealed: Option<i64> = row
        .as_ref()
        .map(|r| r.try_get::<Option<i64>, _>("sealed_at"))
        .transpose()?
        .flatten();
    fence_verdict(expected, stored.as_deref(), sealed)
}

/// The fence's verdict on the root key row's `key_check` and `sealed_at` as read (`None`:
/// no row, or NULL), for a write sealed under the key whose key-check value is `expected`.
/// [`fence_holds`] reads them with a statement of its own; a secret put reads them in its
/// first statement (`secrets::claim_version`), to save a round trip.
fn fence_verdict(
    expected: &[u8],
    stored: Option<&[u8]>,
    sealed: Option<i64>,
) -> Result<(), StoreError> {
    if sealed.is_some() {
        return Err(StoreError::Sealed);
    }
    if stored == Some(expected) {
        Ok(())
    } else {
        Err(StoreError::KeyChanged)
    }
}

/// A time as stored: unix milliseconds (sub-millisecond precision is dropped).
fn to_millis(time: OffsetDateTime) -> i64 {
    let millis = time.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

/// Decodes a stored time.
fn from_millis(millis: i64, column: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).map_err(|_| {
        StoreError::Corrupt(Corruption::Time {
            column: column.to_owned(),
            millis,
        })
    })
}

/// A version number as stored. Numbers beyond `i64::MAX` cannot exist in the database.
fn version_to_db(version: u64) -> Option<i64> {
    i64::try_from(version).ok()
}

/// Decodes a stored version number or count.
fn version_from_db(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        StoreError::Corrupt(Corruption::Negative {
            column: column.to_owned(),
            value,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, Missing, from_millis, to_millis};
    use time::OffsetDateTime;

    #[test]
    fn every_migration_file_is_embedded() {
        MIGRATIONS
            .check_directory(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("embed_migrations! lists the migration files");
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
            .expect("valid time");
        let millis = to_millis(time);
        assert_eq!(millis, 1_700_000_000_123);
        let back = from_millis(millis, "t").expect("decodes");
        assert_eq!(back.unix_timestamp_nanos(), 1_700_000_000_123_000_000);
        assert!(from_millis(i64::MAX, "t").is_err());
    }

    #[test]
    fn version_descriptions() {
        let versions = |versions: &[u64]| Missing::Versions {
            path: "db/x".into(),
            versions: versions.to_vec(),
        };
        assert_eq!(versions(&[3]).to_string(), "version 3 of db/x");
        assert_eq!(versions(&[1, 2]).to_string(), "versions 1, 2 of db/x");
        assert_eq!(Missing::Policy("p".into()).to_string(), "policy \"p\"");
    }
}
