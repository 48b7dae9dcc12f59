//! Telling "the database is down or overloaded, retry shortly" apart from "this query is
//! wrong", so an API can answer 503 to the first and 500 to the second.

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// PostgreSQL SQLSTATE codes (or classes, by their first two characters) that mean the
/// server cannot serve right now rather than that the statement is at fault.
const POSTGRES_TRANSIENT_CLASSES: &[&str] = &[
    "08", // connection exception
    "53", // insufficient resources: too many connections, disk full, out of memory
];
const POSTGRES_TRANSIENT_CODES: &[&str] = &[
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now (starting up, recovering)
    "25006", // read_only_sql_transaction: connected to a standby, e.g. during fail-over
    "40001", // serialization_failure
    "40P01", // deadlock_detected: the other transaction won; retrying succeeds
    "57014", // query_canceled: statement_timeout expired (server slow or a lock held long)
];

/// SQLite primary result codes that mean the file cannot be used right now.
const SQLITE_TRANSIENT_CODES: &[i32] = &[
    5,  // SQLITE_BUSY: another writer held the lock past busy_timeout
    6,  // SQLITE_LOCKED
    10, // SQLITE_IOERR
    13, // SQLITE_FULL: disk full
    14, // SQLITE_CANTOPEN
];

/// Whether `err` means the database is unreachable, overloaded or shutting down (a retry
/// later may succeed), as opposed to a fault of the query or the data.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => is_transient_database_error(db.as_ref()),
        _ => false,
    }
}

fn is_transient_database_error(db: &dyn DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        let code = pg.code();
        return POSTGRES_TRANSIENT_CODES.contains(&code)
            || POSTGRES_TRANSIENT_CLASSES
                .iter()
                .any(|class| code.starts_with(class));
    }
    if db.try_downcast_ref::<SqliteError>().is_some() {
        // SQLite reports the extended result code; its low byte is the primary code.
        let primary = db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        return primary.is_some_and(|code| SQLITE_TRANSIENT_CODES.contains(&code));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_unavailable;

    #[test]
    fn connection_failures_are_unavailable_query_faults_are_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_unavailable(&sqlx::Error::Io(io)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
    }

    /// Through the `Any` driver, as the datastores see them: a locked SQLite database is
    /// unavailable, a bad query is not.
    #[tokio::test]
    async fn sqlite_busy_is_unavailable_syntax_error_is_not() {
        use sqlx::{Connection, Executor};

        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut holder = sqlx::AnyConnection::connect(&url).await.expect("connect");
        let mut waiter = sqlx::AnyConnection::connect(&url).await.expect("connect");
        holder
            .execute("BEGIN IMMEDIATE")
            .await
            .expect("take write lock");
        waiter
            .execute("PRAGMA busy_timeout=0")
            .await
            .expect("no waiting");
        let busy = waiter
            .execute("BEGIN IMMEDIATE")
            .await
            .expect_err("lock is held");
        assert!(is_unavailable(&busy), "{busy:?}");
        let bad = waiter
            .execute("SELECT * FROM no_such_table")
            .await
            .expect_err("no table");
        assert!(!is_unavailable(&bad), "{bad:?}");
    }
}
