//! The benchmark harness (DESIGN.md section 7): drives the real processes over real mTLS on
//! loopback and prints each figure as a ratio against a baseline measured in the same run,
//! because absolute times on shared machines drift.
//!
//! Run it optimised, built together with the binaries it drives (a build of this binary alone
//! resolves features differently, and the harness would rebuild and replace itself):
//! `cargo build --release --workspace --bins && target/release/bench [--reads N]`.
//!
//! - secret reads over a kept-alive mTLS connection vs the same client against a bare
//!   rustls + axum mTLS server (same SVIDs, same HTTP stack) that returns a fixed body;
//! - secret reads on fresh connections vs fresh connections to that bare server;
//! - durable secret writes vs raw SQLite inserts with the same durability settings;
//! - Nexus start to first served read, with keepers up, vs starting and reaping a trivial
//!   process (`nexus --version`);
//! - one audit line (JSON, appended to a file) vs the whole kept-alive read it records;
//! - a root key rotation over `--rotate-secrets` secrets (10,000) vs raw SQLite rewriting one
//!   blob in as many rows in one transaction.
//!
//! `bench --storage` instead measures throughput (16 concurrent clients) of reads and durable
//! writes on PostgreSQL with one and with two Nexus replicas, against SQLite with one, the
//! baseline, all in the same run. PostgreSQL: `SPIKE_TEST_POSTGRES_URL` or the local server.
//!
//! `bench --workload` measures the agent's Workload API (see `workload_api` below).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use identity::https_client::HttpsClient;
use nexus_api::Client;
use tests::secrets::{SUPERUSER_ID, SecretsStack, TD};

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Stats { samples }
    }

    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len().max(1) as u32
    }

    fn pct(&self, p: f64) -> Duration {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples.get(i).copied().unwrap_or_default()
    }

    fn line(&self) -> String {
        format!(
            "mean {:>9.1?}  p50 {:>9.1?}  p99 {:>9.1?}  (n={})",
            self.mean(),
            self.pct(0.5),
            self.pct(0.99),
            self.samples.len()
        )
    }
}

fn report(name: &str, subject: &Stats, baseline: &Stats, baseline_name: &str) {
    let ratio = subject.mean().as_secs_f64() / baseline.mean().as_secs_f64().max(1e-12);
    println!("{name}");
    println!("  subject   {}", subject.line());
    println!("  baseline  {}  [{baseline_name}]", baseline.line());
    println!("  ratio     {ratio:.2}x the baseline");
}

async fn time<F, Fut, T>(n: usize, mut f: F) -> anyhow::Result<Stats>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f(i).await?;
        samples.push(start.elapsed());
    }
    Ok(Stats::new(samples))
}

/// A bare mTLS server with the same SVID source and HTTP stack as Nexus, answering every
/// POST with a fixed JSON body: the floor for a secret read.
async fn baseline_server(source: spiffe::X509Source) -> anyhow::Result<u16> {
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

fn https_client(source: &spiffe::X509Source) -> anyhow::Result<HttpsClient> {
    let td = spiffe::TrustDomain::new(TD)?;
    let tls = identity::workload::client_config(source.clone(), td, |_: &spiffe::SpiffeId| true)?;
    Ok(HttpsClient::new(tls, Duration::from_secs(10)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let reads: usize = std::env::args()
        .skip_while(|a| a != "--reads")
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(2000);
    if std::env::args().any(|a| a == "--storage") {
        return storage().await;
    }
    if std::env::args().any(|a| a == "--workload") {
        return workload_api(reads).await;
    }
    let rotate_secrets: usize = std::env::args()
        .skip_while(|a| a != "--rotate-secrets")
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    eprintln!("starting identity server, agent, 3 keepers and Nexus...");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    // Throughput is the point here: no per-caller rate limit.
    stack.nexus_config = "rate_limit = 0\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    stack.register(&std::env::current_exe()?, SUPERUSER_ID);
    let endpoint = stack.agent.endpoint();
    let source = identity::workload::x509_source(Some(&endpoint), Duration::from_secs(30))
        .await
        .context("bench SVID")?;
    let nexus = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
    nexus
        .put_secret(
            "bench/db",
            [("password".to_owned(), "x".repeat(26))].into(),
            None,
        )
        .await?;
    let base_port = baseline_server(source.clone()).await?;
    let base_url = format!("https://127.0.0.1:{base_port}/v1/store/secrets?action=get");
    let body = Bytes::from_static(br#"{"path":"bench/db"}"#);
    let warm = https_client(&source)?;
    for _ in 0..50 {
        nexus.get_secret("bench/db", 0).await?;
        warm.post_json(HttpsClient::parse_url(&base_url)?, body.clone())
            .await?;
    }

    let subject = time(reads, |_| async {
        Ok(nexus.get_secret("bench/db", 0).await?)
    })
    .await?;
    let baseline = time(reads, |_| {
        let uri = HttpsClient::parse_url(&base_url);
        let body = body.clone();
        let warm = &warm;
        async move { Ok(warm.post_json(uri?, body).await?) }
    })
    .await?;
    report(
        "secret read, kept-alive mTLS",
        &subject,
        &baseline,
        "bare rustls+axum mTLS, fixed body",
    );
    let audit = audit_lines(dir.path(), reads).await?;
    report(
        "audit line (JSON, one write(2) to a file)",
        &audit,
        &subject,
        "the whole kept-alive secret read",
    );

    let fresh = reads / 10;
    let subject = time(fresh, |_| {
        let source = source.clone();
        let url = stack.nexus_url();
        async move {
            Ok(Client::connect(source, &url, TD)?
                .get_secret("bench/db", 0)
                .await?)
        }
    })
    .await?;
    let baseline = time(fresh, |_| {
        let client = https_client(&source);
        let uri = HttpsClient::parse_url(&base_url);
        let body = body.clone();
        async move { Ok(client?.post_json(uri?, body).await?) }
    })
    .await?;
    report(
        "secret read, new connection each",
        &subject,
        &baseline,
        "bare rustls mTLS handshake + request",
    );

    let writes = reads / 10;
    let subject = time(writes, |i| {
        let nexus = &nexus;
        async move {
            Ok(nexus
                .put_secret(
                    &format!("bench/w{i}"),
                    [("v".to_owned(), "y".repeat(32))].into(),
                    None,
                )
                .await?)
        }
    })
    .await?;
    let raw = sqlite_baseline(dir.path(), writes).await?;
    report(
        "durable secret write (put)",
        &subject,
        &raw,
        "raw SQLite insert, WAL + synchronous=FULL",
    );

    eprintln!("writing {rotate_secrets} secrets for the rotation...");
    for i in 0..rotate_secrets {
        nexus
            .put_secret(
                &format!("rotate/s{i}"),
                [("v".to_owned(), "z".repeat(32))].into(),
                None,
            )
            .await?;
    }
    let rotation = time(1, |_| async { Ok(nexus.rotate().await?) }).await?;
    let rewrite = sqlite_rewrite(dir.path(), rotate_secrets).await?;
    report(
        &format!("root key rotation, {rotate_secrets} secrets (API call to commit)"),
        &rotation,
        &rewrite,
        "raw SQLite: rewrite one blob in as many rows, one transaction",
    );

    let mut restarts = Vec::new();
    let mut spawns = Vec::new();
    for _ in 0..5 {
        stack.kill_nexus();
        let start = Instant::now();
        stack.start_nexus().await;
        let client = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
        loop {
            if client.get_secret("bench/db", 0).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        restarts.push(start.elapsed());
        let start = Instant::now();
        std::process::Command::new(tests::bin("nexus"))
            .arg("--version")
            .output()?;
        spawns.push(start.elapsed());
    }
    report(
        "Nexus start to first served read (keepers up)",
        &Stats::new(restarts),
        &Stats::new(spawns),
        "spawn and reap `nexus --version`",
    );
    Ok(())
}

/// Raw inserts, each its own transaction, with Nexus's SQLite durability settings.
async fn sqlite_baseline(dir: &std::path::Path, n: usize) -> anyhow::Result<Stats> {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("baseline.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE t (path TEXT PRIMARY KEY, value BLOB)")
        .execute(&mut conn)
        .await?;
    let value = vec![7u8; 120];
    let conn = tokio::sync::Mutex::new(conn);
    time(n, |i| {
        let value = value.clone();
        let conn = &conn;
        async move {
            let mut conn = conn.lock().await;
            sqlx::query("INSERT INTO t (path, value) VALUES (?, ?)")
                .bind(format!("bench/w{i}"))
                .bind(value)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
    })
    .await
}

/// `n` audit lines appended to a file, one at a time, as Nexus writes them.
async fn audit_lines(dir: &std::path::Path, n: usize) -> anyhow::Result<Stats> {
    use nexus::audit::{AuditLog, AuditRecord, timestamp};
    let clock = nexus::clock::Clock::system();
    let log = AuditLog::file(&dir.join("bench-audit.log"))?;
    time(n, |_| {
        let (log, clock) = (&log, &clock);
        async move {
            log.write(&AuditRecord {
                time: timestamp(clock.now()),
                request_id: "6f1c9a52-3b7e-4d0a-9c1e-2f8b7a6d5e4c",
                caller: SUPERUSER_ID,
                route: "/v1/store/secrets",
                action: "get",
                path: "bench/db",
                decision: nexus::audit::Decision::Allow,
                status: 200,
                latency_us: 100,
            })?;
            Ok(())
        }
    })
    .await
}

/// One transaction rewriting a 60-byte blob in each of `n` rows (what a rotation does to the
/// wrapped data keys, without the cryptography).
async fn sqlite_rewrite(dir: &std::path::Path, n: usize) -> anyhow::Result<Stats> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("rewrite.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
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
    time(1, |_| {
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

/// Concurrent clients in the storage throughput runs.
const CLIENTS: usize = 16;
/// Requests of each kind per run.
const STORAGE_REQUESTS: usize = 4000;

/// Reads and writes per second through every URL in turn (client `i` uses URL `i % n`).
async fn throughput(source: &spiffe::X509Source, urls: &[String]) -> anyhow::Result<(f64, f64)> {
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| Client::connect(source.clone(), &urls[i % urls.len()], TD))
        .collect::<Result<_, _>>()?;
    clients[0]
        .put_secret("tp/read", [("v".to_owned(), "r".repeat(32))].into(), None)
        .await?;
    let run = |write: bool| {
        let clients = &clients;
        async move {
            let start = Instant::now();
            let tasks = clients.iter().enumerate().map(|(c, client)| async move {
                for i in (c..STORAGE_REQUESTS).step_by(CLIENTS) {
                    if write {
                        client
                            .put_secret(
                                &format!("tp/w{i}"),
                                [("v".to_owned(), "w".repeat(32))].into(),
                                None,
                            )
                            .await?;
                    } else {
                        client.get_secret("tp/read", 0).await?;
                    }
                }
                Ok::<_, anyhow::Error>(())
            });
            for result in futures::future::join_all(tasks).await {
                result?;
            }
            Ok::<_, anyhow::Error>(STORAGE_REQUESTS as f64 / start.elapsed().as_secs_f64())
        }
    };
    let writes = run(true).await?;
    let reads = run(false).await?;
    Ok((reads, writes))
}

/// `bench --storage`.
async fn storage() -> anyhow::Result<()> {
    use sqlx::Connection;
    let admin_url = std::env::var("SPIKE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let mut results = Vec::new();
    for (name, postgres, replicas) in [
        ("SQLite, 1 replica", false, 1),
        ("PostgreSQL, 1 replica", true, 1),
        ("PostgreSQL, 2 replicas", true, 2),
    ] {
        let dir = tempfile::tempdir()?;
        let database = format!("spike_bench_{}_{replicas}", std::process::id());
        let url = if postgres {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {database}"))
                .execute(&mut admin)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {database}"))
                .execute(&mut admin)
                .await?;
            Some(admin_url.rsplit_once('/').map_or_else(
                || format!("{admin_url}/{database}"),
                |(base, _)| format!("{base}/{database}"),
            ))
        } else {
            None
        };
        eprintln!("{name}: starting...");
        let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, url.as_deref()).await;
        stack.nexus_config = "rate_limit = 0\n".to_owned();
        let mut urls = stack.start_nexus_and_replicas(replicas - 1).await;
        urls.insert(0, stack.nexus_url());
        for url in &urls {
            stack.wait_ready_at(url).await;
        }
        stack.register(&std::env::current_exe()?, SUPERUSER_ID);
        let source =
            identity::workload::x509_source(Some(&stack.agent.endpoint()), Duration::from_secs(30))
                .await?;
        results.push((name, throughput(&source, &urls).await?));
        drop(stack);
        if postgres {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
        }
    }
    let (_, (base_reads, base_writes)) = results[0];
    println!(
        "storage throughput, {CLIENTS} concurrent clients, {STORAGE_REQUESTS} requests each kind"
    );
    for (name, (reads, writes)) in &results {
        println!(
            "  {name:<24} reads {reads:>8.0}/s ({:.2}x)   durable writes {writes:>7.0}/s ({:.2}x)",
            reads / base_reads,
            writes / base_writes
        );
    }
    println!("  (ratios against SQLite with one replica, measured in the same run)");
    Ok(())
}

/// `bench --workload`: the agent's Workload API as its clients see it, every figure against a
/// call the agent refuses on the same socket (`FetchX509SVID` without the security header), which
/// costs the transport and gRPC framing but no attestation and no cache lookup:
/// - an X509-SVID from the agent's cache: a new stream on a kept-open channel until its first
///   message (caller attested through `/proc`, entries matched, SVID and bundle encoded);
/// - a JWT-SVID (`FetchJWTSVID`, unary) on the same channel;
/// - the `spiffe` crate's `fetch_x509_svid` on a new connection each time, against a new
///   connection and one refused call.
async fn workload_api(n: usize) -> anyhow::Result<()> {
    use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
    use spire_proto::workload::{JwtsvidRequest, X509svidRequest};
    use tests::stack::{Agent, Server};

    let dir = tempfile::tempdir()?;
    let td = "example.org";
    eprintln!("starting identity server and agent...");
    let server = Server::start(&dir.path().join("server"), td, &[]).await;
    let token = server.join_token(&[]);
    // Unlimited: the bench would otherwise measure the per-process rate limit.
    let agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &["-workloadRateLimit", "0"],
    )
    .await;
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let exe = std::env::current_exe()?;
    server.create_entry(
        &format!("spiffe://{td}/bench"),
        &server.agent_id(&token),
        &[
            &format!("unix:uid:{uid}"),
            &format!("unix:path:{}", exe.display()),
        ],
        &[],
    );
    agent.fetch_svid().await;
    let endpoint = agent.endpoint();

    let channel = spire_proto::uds::connect(&agent.socket).await?;
    fn with_header<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "workload.spiffe.io",
            tonic::metadata::MetadataValue::from_static("true"),
        );
        request
    }
    let x509 = || {
        let mut client = SpiffeWorkloadApiClient::new(channel.clone());
        async move {
            let mut stream = client
                .fetch_x509svid(with_header(X509svidRequest {}))
                .await?
                .into_inner();
            let first = stream
                .message()
                .await?
                .context("stream ended before its first message")?;
            anyhow::ensure!(first.svids.len() == 1, "one SVID expected");
            Ok(())
        }
    };
    let refused = || {
        let mut client = SpiffeWorkloadApiClient::new(channel.clone());
        async move {
            match client.fetch_x509svid(X509svidRequest {}).await {
                Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
                other => anyhow::bail!("expected InvalidArgument, got {other:?}"),
            }
        }
    };
    for _ in 0..50 {
        x509().await?;
        refused().await?;
    }
    let subject = time(n, |_| x509()).await?;
    let baseline = time(n, |_| refused()).await?;
    report(
        "X509-SVID from the agent's cache (new stream, first message)",
        &subject,
        &baseline,
        "refused call without the security header, same channel",
    );

    let jwt = time(n, |_| {
        let mut client = SpiffeWorkloadApiClient::new(channel.clone());
        async move {
            let response = client
                .fetch_jwtsvid(with_header(JwtsvidRequest {
                    audience: vec!["bench".to_owned()],
                    spiffe_id: String::new(),
                }))
                .await?
                .into_inner();
            anyhow::ensure!(response.svids.len() == 1, "one JWT-SVID expected");
            Ok(())
        }
    })
    .await?;
    report(
        "JWT-SVID (FetchJWTSVID, same channel)",
        &jwt,
        &baseline,
        "refused call without the security header, same channel",
    );

    let fresh = n / 4;
    let subject = time(fresh, |_| {
        let endpoint = endpoint.clone();
        async move {
            let client = spiffe::WorkloadApiClient::connect_to(&endpoint).await?;
            client.fetch_x509_svid().await?;
            Ok(())
        }
    })
    .await?;
    let baseline = time(fresh, |_| {
        let socket = agent.socket.clone();
        async move {
            let channel = spire_proto::uds::connect(socket).await?;
            match SpiffeWorkloadApiClient::new(channel)
                .fetch_x509svid(X509svidRequest {})
                .await
            {
                Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
                other => anyhow::bail!("expected InvalidArgument, got {other:?}"),
            }
        }
    })
    .await?;
    report(
        "X509-SVID with the spiffe crate, new connection each",
        &subject,
        &baseline,
        "new connection + refused call",
    );
    Ok(())
}
