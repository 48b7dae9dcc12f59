//! The floors the figures are measured against: a bare mTLS server with Nexus's HTTP stack,
//! in a process of its own as Nexus is (and, for comparison, in the harness's own process),
//! and raw SQLite with Nexus's durability settings.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use identity::https_client::HttpsClient;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tests::secrets::TD;
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// The argument that makes the harness binary the bare server's own process
/// ([`serve_as_process`]) instead of the harness.
pub const SERVER_PROCESS_ARG: &str = "--bare-server";

/// The bare server ([`server`]) in a process of its own, as Nexus runs: the harness binary
/// again, with [`SERVER_PROCESS_ARG`], taking its SVID as `id` from the agent at `endpoint`.
/// Returns the process and its port. The process ends when its standard input closes, so
/// when the returned handle is dropped (it is also killed then) or the harness exits.
pub async fn server_process(
    endpoint: &str,
    id: &str,
) -> anyhow::Result<(tokio::process::Child, u16)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([SERVER_PROCESS_ARG, endpoint, id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("the bare server's stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("the bare server did not report its port within 30 s")??;
    let port = line
        .trim()
        .strip_prefix("port=")
        .with_context(|| format!("the bare server said {line:?}, not its port"))?
        .parse()?;
    Ok((child, port))
}

/// The bare server's process: `args` are the agent's endpoint and the SPIFFE ID to serve as.
/// Prints `port=N` once it listens, serves until its standard input closes.
pub async fn serve_as_process(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let endpoint = args.next().context("the agent's endpoint")?;
    let id = args.next().context("the SPIFFE ID to serve as")?;
    let source = crate::secrets::source_at(&endpoint, &id).await?;
    let port = server(source).await?;
    println!("port={port}");
    // Ends with the harness: its end of the pipe closes when it exits or drops the child.
    tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

/// An mTLS client with its own connection pool, presenting `source`'s SVID and accepting
/// any server of the trust domain: the bare servers' and Nexus's, in the read figures.
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
