//! A real PostgreSQL server for tests. No server is a test failure, never a skip.
//!
//! The server is the one named by `SPIKE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, see [`postgres_url`]). Enabled by this
//! crate's `testing` feature, for dev-dependencies only.
//! [`TestDatabase::create`] makes a fresh database with a unique name on it and drops it
//! again when the guard is dropped, also when the test panics.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// URL of the PostgreSQL server tests use: `SPIKE_TEST_POSTGRES_URL`, or the local server.
pub fn postgres_url() -> String {
    std::env::var("SPIKE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A pool on the maintenance database, for creating and dropping test databases.
pub async fn admin(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable_message(url, &e)))
}

/// `url` with its database (path) replaced by `db`, keeping any query string.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{db}?{query}"),
        None => format!("{server}/{db}"),
    }
}

/// A database that exists for as long as this guard does.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a fresh, empty database named `spike_test_<uuid>`.
    ///
    /// Panics, explaining how to start PostgreSQL, if the server cannot be reached.
    pub async fn create() -> TestDatabase {
        let admin_url = postgres_url();
        let name = format!("spike_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable_message(&admin_url, &e)));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|err| panic!("create test database {name}: {err}"));
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// The URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where we cannot block on async work: do it
        // on a fresh thread with its own runtime and wait for it. `WITH (FORCE)` so pools
        // the test left open do not block it.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(sql.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: could not drop test database {}: {err}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

fn unreachable_message(url: &str, err: &sqlx::Error) -> String {
    format!(
        "PostgreSQL is required at {} ({err}). These tests need a running PostgreSQL whose \
         user may CREATE DATABASE: start one (`pg_ctlcluster <version> main start`, or \
         `docker run --rm -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`), \
         or set SPIKE_TEST_POSTGRES_URL to the URL of a server you have.",
        redact(url)
    )
}

/// `url` with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _password)) => {
                format!("{}://{user}:***{}", &url[..scheme_end], &rest[at..])
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A `sqlite://` URL for a fresh database file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("test.db").display())
}

/// Generates, for each `$check => $sqlite, $postgres;`, a test running `$check(url)` on a fresh
/// SQLite file and one on a fresh PostgreSQL database, for suites that open the store
/// themselves. The calling crate needs `tokio` and `tempfile`.
#[macro_export]
macro_rules! backend_url_tests {
    ($($check:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = tempfile::tempdir().expect("create temp dir");
            $check(&$crate::testing::sqlite_url(dir.path())).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let db = $crate::testing::TestDatabase::create().await;
            $check(db.url()).await;
        }
    )*};
}

/// Like [`backend_url_tests`], for checks taking an open store: `$connect(url)` opens it
/// (it must have `backend()` and `close()`), the test asserts the backend, runs
/// `$check(&store)` and closes it.
#[macro_export]
macro_rules! backend_tests {
    ($connect:path; $($check:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = tempfile::tempdir().expect("create temp dir");
            let store = $connect(&$crate::testing::sqlite_url(dir.path()))
                .await
                .expect("open a SQLite store");
            assert_eq!(store.backend(), $crate::Backend::Sqlite);
            $check(&store).await;
            store.close().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let db = $crate::testing::TestDatabase::create().await;
            let store = $connect(db.url())
                .await
                .expect("open a PostgreSQL store");
            assert_eq!(store.backend(), $crate::Backend::Postgres);
            $check(&store).await;
            store.close().await;
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::{redact, with_database};

    #[test]
    fn url_helpers() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
