//! SQL plumbing shared by the datastores (the SPIRE server's and Nexus's): one sqlx `Any`
//! pool over SQLite or PostgreSQL, chosen by the URL.
//!
//! # Why one implementation for two databases
//!
//! Each datastore has a single code path for both backends. It talks to the database through
//! sqlx's `Any` driver and restricts itself to SQL that SQLite and PostgreSQL both accept
//! (`$1` placeholders, `INSERT … ON CONFLICT`, `… RETURNING`). The backends differ only in
//!
//! * the connection URL (`sqlite://…` or `postgres://…`), see [`Backend::from_url`];
//! * the migrations, one directory per backend with the same tables and columns and the
//!   same file names, embedded by each datastore's crate with [`embed_migrations!`] and
//!   handed to [`connect`] ([`migrations`] says why not `sqlx::migrate!`);
//! * connection setup, done here: SQLite connections get their pragmas (WAL,
//!   `synchronous=FULL`, foreign keys, a busy timeout), SQLite write transactions start
//!   with `BEGIN IMMEDIATE` ([`begin_write`]), and PostgreSQL connections may get a
//!   statement timeout ([`PoolSettings`], [`connect_with`]).
//!
//! Every query therefore runs, and is tested, on both databases.

pub mod migrations;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod unavailable;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

pub use migrations::Migrations;
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use sqlite::sqlite_url;
pub use unavailable::is_unavailable;

/// How long a caller waits for a pooled connection before the pool gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from opening a datastore.
#[derive(thiserror::Error, Debug)]
pub enum SqlError {
    /// The URL uses a scheme other than `sqlite`, `postgres` or `postgresql`. Holds the
    /// scheme only, never the full URL (which may contain a password).
    #[error(
        "unsupported datastore URL scheme {0:?}: expected sqlite://, postgres:// or postgresql://"
    )]
    UnsupportedUrl(String),
    /// The SQLite database file did not exist and could not be created.
    #[error("cannot create database file {}: {source}", path.display())]
    CreateFile {
        /// The file that was to be created.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// The database reported an error (connection, query or constraint failure).
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which database a pool is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite database file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The backend a datastore URL names: `sqlite:…`, or `postgres://…` / `postgresql://…`
    /// (scheme case-insensitive).
    pub fn from_url(url: &str) -> Result<Backend, SqlError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(SqlError::UnsupportedUrl(scheme.to_owned())),
        }
    }
}

/// Connects to `url` and brings the schema up to date with the backend's `migrations`, with
/// the default [`PoolSettings`].
///
/// Accepted URLs are `sqlite://PATH` and `postgres://…` / `postgresql://…`. A SQLite file
/// is created if missing (unless the URL sets `mode=` itself), readable and writable by
/// its owner only; an existing file keeps its permissions.
pub async fn connect(url: &str, migrations: &Migrations) -> Result<(AnyPool, Backend), SqlError> {
    connect_with(url, migrations, PoolSettings::default()).await
}

/// Pool settings beyond [`connect`]'s defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolSettings {
    /// PostgreSQL only: the server cancels a statement that runs longer than this
    /// (`statement_timeout`, set on every pooled connection), so a stuck query or a lock
    /// held too long becomes an error ([`is_unavailable`]: retry later) instead of a
    /// request that hangs. Migrations run without it. `None`: the server's setting.
    pub statement_timeout: Option<Duration>,
    /// How long a caller waits for a pooled connection, including reconnecting while the
    /// database is down, before the pool gives up with `PoolTimedOut`. `None`: 10 s.
    pub acquire_timeout: Option<Duration>,
}

/// [`connect`] with `settings`.
pub async fn connect_with(
    url: &str,
    migrations: &Migrations,
    settings: PoolSettings,
) -> Result<(AnyPool, Backend), SqlError> {
    static INSTALL_DRIVERS: Once = Once::new();
    INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);

    let backend = Backend::from_url(url)?;
    let options =
        AnyPoolOptions::new().acquire_timeout(settings.acquire_timeout.unwrap_or(ACQUIRE_TIMEOUT));
    let (options, url) = match backend {
        Backend::Sqlite => {
            let url = sqlite_url(url);
            sqlite::create_private_file(&url)?;
            // Every connection of a pool on an in-memory database must see the same
            // (shared-cache) database, and shared cache reports lock conflicts without
            // honouring busy_timeout: serialise through a single connection.
            let max = if sqlite::is_in_memory(&url) { 1 } else { 6 };
            // No ping before each checkout (sqlx's default): a SQLite connection is a file
            // handle on sqlx's worker thread, not a socket that can drop, and the ping is a
            // round trip to that thread on every query and transaction. A connection whose
            // worker died still fails its next statement, and sqlx pings it when it comes
            // back to the pool.
            let options = options
                .max_connections(max)
                .test_before_acquire(false)
                .after_connect(|conn, _meta| Box::pin(sqlite::apply_pragmas(conn)));
            (options, url)
        }
        Backend::Postgres => {
            let options = options.max_connections(10);
            let options = match settings.statement_timeout {
                Some(timeout) => {
                    let millis = timeout.as_millis().max(1);
                    options.after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            conn.execute(format!("SET statement_timeout = {millis}").as_str())
                                .await
                                .map(drop)
                        })
                    })
                }
                None => options,
            };
            (options, url.to_owned())
        }
    };
    let migrator = migrations.migrator(backend).await?;
    let pool = options.connect(&url).await?;

    let migrated = match (backend, settings.statement_timeout) {
        (Backend::Postgres, Some(_)) => migrate_without_timeout(&url, &migrator).await,
        _ => migrator.run(&pool).await,
    };
    if let Err(err) = migrated {
        pool.close().await;
        return Err(err.into());
    }
    Ok((pool, backend))
}

/// Runs `migrator` over a connection of its own, without the pool's statement timeout: a
/// migration may rewrite a large table, and it waits for another process's migration lock.
async fn migrate_without_timeout(
    url: &str,
    migrator: &Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await?;
    let migrated = migrator.run(&pool).await;
    pool.close().await;
    migrated
}

/// Starts a transaction that will write. On SQLite it takes the database write lock
/// immediately (`BEGIN IMMEDIATE`), so it waits (busy_timeout) for other writers instead of
/// failing with `SQLITE_BUSY` when it later upgrades a read snapshot to a write. On
/// PostgreSQL it is a plain READ COMMITTED transaction: callers serialise on row locks.
pub async fn begin_write(
    pool: &AnyPool,
    backend: Backend,
) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, SqlError};

    #[test]
    fn backend_from_url_scheme() {
        assert_eq!(
            Backend::from_url("sqlite:///a.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("SQLite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            Backend::from_url("mysql://u:secret@h/db"),
            Err(SqlError::UnsupportedUrl(scheme)) if scheme == "mysql"
        ));
        assert!(matches!(
            Backend::from_url("no-scheme"),
            Err(SqlError::UnsupportedUrl(_))
        ));
    }
}
