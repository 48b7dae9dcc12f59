//! A real PostgreSQL server for tests. No server is a test failure, never a skip.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A pool on the maintenance database, for creating and dropping test databases.
pub async fn admin(url: &str) -> PgPool {
    PgPoolOptions::new().max_connections(2).connect(url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required at {url} ({e}); start it (pg_ctlcluster <version> main start) or set SPIKE_TEST_POSTGRES_URL"
        )
    })
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    format!("{prefix}/{db}")
}
