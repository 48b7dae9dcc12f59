//! The root key's public record (`root_key`): a single row, written once, by exactly one
//! Nexus even when several replicas start together on an empty database.

use std::future::Future;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Backend, Corruption, KeyRecord, Store, StoreError, from_millis, to_millis};

/// The PostgreSQL advisory lock that serialises first-time initialisation across every
/// Nexus on one database (advisory locks are per database). The value is arbitrary
/// ("nexusini" in ASCII); nothing else in this database uses advisory locks except sqlx's
/// migrator, whose keys are derived from the database name.
const INIT_LOCK: i64 = 0x6e65_7875_7369_6e69;

/// What [`Store::initialize_exclusively`] did.
#[derive(Debug)]
pub enum Initialization<T> {
    /// The datastore was empty: `create` ran and its record is now stored.
    Created(T),
    /// The datastore already held a record (written earlier, or by another Nexus while
    /// this one waited for the lock); `create` did not run.
    Existing(KeyRecord),
}

/// Why [`Store::initialize_exclusively`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError<E> {
    /// The datastore failed (taking the lock, reading, or writing the record).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `create` failed; its error.
    #[error("{0}")]
    Create(E),
}

impl<E> From<sqlx::Error> for InitError<E> {
    fn from(error: sqlx::Error) -> Self {
        InitError::Store(error.into())
    }
}

impl Store {
    /// The stored key record, or `None` if the datastore was never initialised.
    pub async fn key_record(&self) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(RECORD_QUERY).fetch_optional(&self.pool).await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// First-time initialisation, exclusive across every process on this database: under a
    /// database-wide lock, checks that no record exists, runs `create` (which makes a root
    /// key, hands its shards out and returns its record with any value for the caller),
    /// and stores the record in the same transaction.
    ///
    /// A second caller, in any process, waits for the lock and then finds the first one's
    /// record ([`Initialization::Existing`]), so two replicas starting together never both
    /// hand out shards of different keys. If `create` fails, or the process dies inside
    /// it, nothing is stored and the lock is released for the next attempt.
    ///
    /// The lock is a transaction that stays open while `create` runs: PostgreSQL
    /// `pg_advisory_xact_lock`, SQLite `BEGIN IMMEDIATE` (which also holds off every other
    /// writer, so `create` must not write through this store). On PostgreSQL a waiter gives
    /// up after the statement timeout with an error for which
    /// [`StoreError::is_unavailable`] holds; retry then.
    pub async fn initialize_exclusively<T, E, F, Fut>(
        &self,
        create: F,
    ) -> Result<Initialization<T>, InitError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(KeyRecord, T), E>>,
    {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Selected through FROM: the lock function returns `void`, a type the Any
            // driver cannot decode.
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1)")
                .bind(INIT_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        // READ COMMITTED (PostgreSQL's default): this statement sees a record committed by
        // the lock's previous holder.
        if let Some(row) = sqlx::query(RECORD_QUERY).fetch_optional(&mut *tx).await? {
            let record = record_from_row(&row)?;
            tx.rollback().await?;
            return Ok(Initialization::Existing(record));
        }
        let (record, value) = match create().await {
            Ok(created) => created,
            Err(error) => {
                tx.rollback().await?;
                return Err(InitError::Create(error));
            }
        };
        if !insert_record(&mut tx, &record).await? {
            return Err(StoreError::Corrupt(Corruption::RecordAppeared).into());
        }
        tx.commit().await?;
        Ok(Initialization::Created(value))
    }

    /// Stores `record` unless a record exists. Returns `true` if this call stored it,
    /// `false` if one already existed (left unchanged), so a datastore is never re-keyed.
    /// [`initialize_exclusively`](Self::initialize_exclusively) with nothing to create.
    pub async fn initialize(&self, record: &KeyRecord) -> Result<bool, StoreError> {
        let outcome = self
            .initialize_exclusively(|| async { Ok::<_, StoreError>((record.clone(), ())) })
            .await;
        match outcome {
            Ok(Initialization::Created(())) => Ok(true),
            Ok(Initialization::Existing(_)) => Ok(false),
            Err(InitError::Store(error) | InitError::Create(error)) => Err(error),
        }
    }
}

const RECORD_QUERY: &str =
    "SELECT key_check, threshold, shares, created_at FROM root_key WHERE id = 1";

fn record_from_row(row: &AnyRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        key_check: row.try_get("key_check")?,
        threshold: small(row.try_get("threshold")?, "threshold")?,
        shares: small(row.try_get("shares")?, "shares")?,
        created_at: from_millis(row.try_get("created_at")?, "root_key.created_at")?,
    })
}

/// Inserts the record; `false` if one exists. The row's key is fixed, so this could never
/// overwrite a record even without the lock.
async fn insert_record(tx: &mut AnyConnection, record: &KeyRecord) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO root_key (id, key_check, threshold, shares, created_at) \
         VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(record.key_check.as_slice())
    .bind(i64::from(record.threshold))
    .bind(i64::from(record.shares))
    .bind(to_millis(record.created_at))
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

fn small(value: i64, column: &str) -> Result<u8, StoreError> {
    u8::try_from(value).map_err(|_| {
        StoreError::Corrupt(Corruption::OutOfRange {
            column: format!("root_key.{column}"),
            value,
        })
    })
}
