//! The server's persistent state: registration entries, join tokens, attested agents, trust
//! bundles and federation relationships, stored in SQLite or PostgreSQL.
//!
//! # One implementation for two databases
//!
//! There is a single [`Datastore`] type and a single code path for both backends, over
//! sqlx's `Any` driver; `common_sql` explains how and does the connection setup (URL
//! scheme, SQLite pragmas and file permissions, migrations, `BEGIN IMMEDIATE`). The
//! migrations are `migrations/sqlite` and `migrations/postgres`: same tables and columns,
//! each in its dialect. `tests/datastore.rs` runs one suite against both databases, so a
//! bug cannot hide in a backend that only production uses.
//!
//! To stay within what `Any` decodes portably, timestamps are unix seconds in 64-bit
//! integers, booleans are integers 0/1, and lists are JSON text (bytes inside JSON are
//! base64).

mod agents;
mod bundles;
mod entries;
mod model;
mod relationships;
mod tokens;

use identity::clock::Clock;
use sqlx::{Any, AnyPool, Transaction};

pub use common_sql::Backend;
pub use model::{
    AttestedAgent, Bundle, Entry, EntryFilter, JoinToken, JwtKey, Relationship, Selector,
};

/// `migrations/{sqlite,postgres}/`, embedded (a new migration file goes in this list too; a
/// test checks it).
static MIGRATIONS: common_sql::Migrations = common_sql::embed_migrations![
    "0001_initial.sql",
    "0002_agent_new_serial.sql",
    "0003_federation_relationships.sql",
];

/// Errors returned by the datastore.
#[derive(thiserror::Error, Debug)]
pub enum DatastoreError {
    /// The named object (for example `"entry 1234"`) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A create or update would duplicate an existing object; the message says which.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Connecting, migrating or querying failed (`common_sql` says which).
    #[error(transparent)]
    Sql(#[from] common_sql::SqlError),
    /// A stored value could not be decoded (for example malformed JSON in a list column).
    #[error("corrupt data in datastore: {0}")]
    Corrupt(String),
}

/// Every query's `?`: a database error is one of `common_sql`'s.
impl From<sqlx::Error> for DatastoreError {
    fn from(err: sqlx::Error) -> Self {
        DatastoreError::Sql(common_sql::SqlError::Sqlx(err))
    }
}

/// Handle to the server datastore. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Datastore {
    pool: AnyPool,
    backend: Backend,
    /// What `created_at` columns are stamped with.
    clock: Clock,
}

impl Datastore {
    /// Connects to `url` and brings the schema up to date.
    ///
    /// Accepted URLs are `sqlite://PATH` (the file is created if missing unless the URL
    /// sets `mode=` itself) and `postgres://…` / `postgresql://…`. Any other scheme yields
    /// [`common_sql::SqlError::UnsupportedUrl`].
    pub async fn connect(url: &str) -> Result<Datastore, DatastoreError> {
        let (pool, backend) = common_sql::connect(url, &MIGRATIONS).await?;
        Ok(Datastore {
            pool,
            backend,
            clock: Clock::system(),
        })
    }

    /// The same datastore, stamping records with `clock`'s time.
    pub fn with_clock(self, clock: Clock) -> Self {
        Datastore { clock, ..self }
    }

    /// Closes every connection of the pool, waiting for checked-out ones to be returned.
    /// Later calls on any clone of this handle fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database this datastore is connected to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write (`BEGIN IMMEDIATE` on SQLite, see
    /// [`common_sql::begin_write`]).
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, DatastoreError> {
        Ok(common_sql::begin_write(&self.pool, self.backend).await?)
    }
}

/// Whether `err` is a unique-constraint (or primary-key) violation on either backend.
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Encodes a bool for a 0/1 integer column.
fn bool_to_db(value: bool) -> i64 {
    i64::from(value)
}

/// Decodes a 0/1 integer column; anything else is corruption.
fn bool_from_db(value: i64, column: &str) -> Result<bool, DatastoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DatastoreError::Corrupt(format!(
            "column {column} holds {other}, expected 0 or 1"
        ))),
    }
}

/// Serialises a value for a JSON text column.
fn to_json<T: serde::Serialize + ?Sized>(
    value: &T,
    column: &str,
) -> Result<String, DatastoreError> {
    serde_json::to_string(value)
        .map_err(|e| DatastoreError::Corrupt(format!("cannot encode {column} as JSON: {e}")))
}

/// Parses a JSON text column.
fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    column: &str,
) -> Result<T, DatastoreError> {
    serde_json::from_str(text)
        .map_err(|e| DatastoreError::Corrupt(format!("column {column} is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_embedded() {
        super::MIGRATIONS
            .check_directory(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
            .expect("embed_migrations! lists the migration files");
    }
}
