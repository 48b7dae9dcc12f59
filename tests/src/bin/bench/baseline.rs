//! The floors the figures are measured against: a bare mTLS server with Nexus's HTTP stack,
//! and raw SQLite with Nexus's durability settings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use identity::https_client::HttpsClient;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tests::secrets::TD;

use crate::measure::{self, Stats};

/// A bare mTLS server with the same SVID source and HTTP stack as Nexus, answering every
/// POST with a fixed JSON body of a secret's size; returns its port. It serves until the
/// process ends, on loopback only.
pub async fn server(source: spiffe::X509Source) -> anyhow::Result<u16> {
    let td = spiffe::TrustDomain::new(TD)?;
    let tls = identity::workload::server_config(source, td, |_: &spiffe::SpiffeId| true)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().fallback(|| async {
        axum::Json(
            serde_json::json!({"data": {"password": "fixed-body-of-similar-size"}, "version": 1}),
        )
    });
    tokio::spawn(identity::http::serve(
        listener,
        Arc::new(tls),
        app,
        identity::http::ServeOptions::default(),
        std::future::pending(),
    ));
    Ok(port)
}

/// A client of the bare server with its own connection pool, presenting `source`'s SVID.
pub fn client(source: &spiffe::X509Source) -> anyhow::Result<HttpsClient> {
    let td = spiffe::TrustDomain::new(TD)?;
    let tls = identity::workload::client_config(source.clone(), td, |_: &spiffe::SpiffeId| true)?;
    Ok(HttpsClient::new(tls, Duration::from_secs(10)))
}

async fn sqlite(path: &Path) -> anyhow::Result<SqliteConnection> {
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?)
}

async fn insert(conn: &mut SqliteConnection, path: String) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO t (path, value) VALUES (?, ?)")
        .bind(path)
        .bind(vec![7u8; 120])
        .execute(conn)
        .await?;
    Ok(())
}

/// `n` raw inserts, each its own transaction, timed one by one.
pub async fn sqlite_inserts(dir: &Path, n: usize) -> anyhow::Result<Stats> {
    let mut conn = sqlite(&dir.join("baseline-1.db")).await?;
    sqlx::query("CREATE TABLE t (path TEXT PRIMARY KEY, value BLOB)")
        .execute(&mut conn)
        .await?;
    let conn = tokio::sync::Mutex::new(conn);
    measure::time(n, |i| {
        let conn = &conn;
        async move { insert(&mut *conn.lock().await, format!("bench/w{i}")).await }
    })
    .await
}

/// Inserts per second by `writers` connections sharing `n` inserts, one per transaction.
pub async fn sqlite_insert_rate(dir: &Path, writers: usize, n: usize) -> anyhow::Result<f64> {
    let path = dir.join("baseline-n.db");
    let mut first = sqlite(&path).await?;
    sqlx::query("CREATE TABLE t (path TEXT PRIMARY KEY, value BLOB)")
        .execute(&mut first)
        .await?;
    let mut conns = vec![tokio::sync::Mutex::new(first)];
    for _ in 1..writers {
        conns.push(tokio::sync::Mutex::new(sqlite(&path).await?));
    }
    measure::rate(writers, n, |c, i| {
        let conn = &conns[c];
        async move { insert(&mut *conn.lock().await, format!("bench/w{i}")).await }
    })
    .await
}

/// One transaction rewriting a 60-byte blob in each of `n` rows (what a rotation does to the
/// wrapped data keys, without the cryptography).
pub async fn sqlite_rewrite(dir: &Path, n: usize) -> anyhow::Result<Stats> {
    let mut conn = sqlite(&dir.join("rewrite.db")).await?;
    sqlx::query("CREATE TABLE t (path TEXT PRIMARY KEY, wrapped BLOB)")
        .execute(&mut conn)
        .await?;
    let mut tx = conn.begin().await?;
    for i in 0..n {
        sqlx::query("INSERT INTO t (path, wrapped) VALUES (?, ?)")
            .bind(format!("rotate/s{i}"))
            .bind(vec![1u8; 60])
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let conn = tokio::sync::Mutex::new(conn);
    measure::time(1, |_| {
        let conn = &conn;
        async move {
            let mut conn = conn.lock().await;
            let mut tx = conn.begin().await?;
            let rows = sqlx::query_scalar::<_, String>("SELECT path FROM t")
                .fetch_all(&mut *tx)
                .await?;
            for path in rows {
                sqlx::query("UPDATE t SET wrapped = ? WHERE path = ?")
                    .bind(vec![2u8; 60])
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    })
    .await
}
