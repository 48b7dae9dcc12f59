//! The server's persistent state: registration entries, join tokens, attested agents and
//! trust bundles, stored in SQLite or PostgreSQL.
//!
//! # Why one implementation for two databases
//!
//! There is a single [`Datastore`] type and a single code path for both backends. It talks
//! to the database through sqlx's `Any` driver and restricts itself to SQL that SQLite and
//! PostgreSQL both accept (`$1` placeholders, `INSERT … ON CONFLICT … DO UPDATE`,
//! `DELETE … RETURNING`). The backends differ only in
//!
//! * the connection URL (`sqlite://…` or `postgres://…`),
//! * the migrations (`migrations/sqlite` and `migrations/postgres`, same tables and columns,
//!   each in its dialect), and
//! * connection setup: SQLite connections get their pragmas, and SQLite write transactions
//!   start with `BEGIN IMMEDIATE` so they take the write lock up front.
//!
//! Every query therefore runs, and is tested (`tests/datastore.rs` runs one suite against
//! both), on both databases; a bug cannot hide in a backend that only production uses.
//!
//! To stay within what `Any` decodes portably, timestamps are unix seconds in 64-bit
//! integers, booleans are integers 0/1, and lists are JSON text (bytes inside JSON are
//! base64).

mod agents;
mod bundles;
mod entries;
mod model;
mod tokens;

use std::sync::Once;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

pub use model::{AttestedAgent, Bundle, Entry, EntryFilter, JoinToken, JwtKey, Selector};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Pragmas applied to every SQLite connection, in order.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
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
    /// The datastore URL uses a scheme other than `sqlite`, `postgres` or `postgresql`.
    /// Holds the scheme only, never the full URL (which may contain a password).
    #[error(
        "unsupported datastore URL scheme {0:?}: expected sqlite://, postgres:// or postgresql://"
    )]
    UnsupportedUrl(String),
    /// The database reported an error (connection, query or constraint failure).
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (for example malformed JSON in a list column).
    #[error("corrupt data in datastore: {0}")]
    Corrupt(String),
}

/// Which database a [`Datastore`] is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite database file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// Handle to the server datastore. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Datastore {
    pool: AnyPool,
    backend: Backend,
}

impl Datastore {
    /// Connects to `url` and brings the schema up to date.
    ///
    /// Accepted URLs are `sqlite://PATH` (the file is created if missing unless the URL
    /// sets `mode=` itself) and `postgres://…` / `postgresql://…`. Any other scheme yields
    /// [`DatastoreError::UnsupportedUrl`].
    pub async fn connect(url: &str) -> Result<Datastore, DatastoreError> {
        static INSTALL_DRIVERS: Once = Once::new();
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);

        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let (backend, url) = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => (Backend::Sqlite, sqlite_url(url)),
            "postgres" | "postgresql" => (Backend::Postgres, url.to_owned()),
            _ => return Err(DatastoreError::UnsupportedUrl(scheme.to_owned())),
        };

        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let options = match backend {
            Backend::Sqlite => {
                // Every connection of a pool on an in-memory database must see the same
                // (shared-cache) database, and shared cache reports lock conflicts without
                // honouring busy_timeout: serialise through a single connection.
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                options
                    .max_connections(if in_memory { 1 } else { 6 })
                    .after_connect(|conn, _meta| Box::pin(apply_sqlite_pragmas(conn)))
            }
            Backend::Postgres => options.max_connections(10),
        };
        let pool = options.connect(&url).await?;

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        if let Err(err) = migrator.run(&pool).await {
            pool.close().await;
            return Err(err.into());
        }
        Ok(Datastore { pool, backend })
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

    /// Starts a transaction that will write. On SQLite it takes the database write lock
    /// immediately (`BEGIN IMMEDIATE`), so it waits (busy_timeout) for other writers instead
    /// of failing with `SQLITE_BUSY` when it later upgrades a read snapshot to a write.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, DatastoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

async fn apply_sqlite_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in SQLITE_PRAGMAS {
        conn.execute(*pragma).await?;
    }
    Ok(())
}

/// Adds `mode=rwc` (create the file if missing) to a SQLite URL that does not choose a mode.
fn sqlite_url(url: &str) -> String {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    let has_mode = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("mode"));
    if has_mode || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Current time in unix seconds.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
    use super::sqlite_url;

    #[test]
    fn sqlite_url_gets_create_mode_unless_chosen() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db"),
            "sqlite:///tmp/a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db?cache=shared"),
            "sqlite:///tmp/a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db?mode=ro"),
            "sqlite:///tmp/a.db?mode=ro"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
