//! Logging in to PostgreSQL with the credentials from Nexus.

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::credentials::DbCredentials;

/// Where the database is.
#[derive(Debug, Clone)]
pub struct Database {
    pub host: String,
    pub port: u16,
    pub name: String,
}

impl Database {
    /// Logs in as `credentials.username` and asks the server who we are.
    ///
    /// Returns the connection and the server's `current_user`: proof that the login worked,
    /// not just that a socket opened.
    pub async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<(PgConnection, String), sqlx::Error> {
        // Every field the login depends on is set here, the password always from Nexus
        // (never PGPASSWORD or ~/.pgpass, which `new()` would consult).
        let options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&credentials.username)
            .password(credentials.password())
            .application_name("db-app");
        let mut conn = PgConnection::connect_with(&options).await?;
        let user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut conn)
            .await?;
        Ok((conn, user))
    }
}

/// Closes a connection politely (a `Terminate` message, so the server logs no EOF error).
pub async fn close(conn: PgConnection) {
    let _ = conn.close().await;
}
