//! `db-app`: an application that gets its database password from SPIKE Nexus, with no
//! credential of its own to start with. Copy it as the skeleton of yours.
//!
//! The flow:
//! 1. **Identity.** Ask the SPIFFE agent's Workload API (`SPIFFE_ENDPOINT_SOCKET`) for an
//!    X.509-SVID. The agent decides who we are by attesting this process (its uid, its binary),
//!    so the app needs no token or password to get it.
//! 2. **Nexus.** Call Nexus over mutual TLS with that SVID, accepting only a server whose SVID
//!    is Nexus's (`spiffe://<trust domain>/spike/nexus`). Nexus lets us read the secret if a
//!    policy grants our SPIFFE ID `read` on it ([`credentials`]).
//! 3. **Database.** Log in to PostgreSQL as the secret's `username` with its `password` and
//!    run `SELECT current_user` ([`database`]).
//! 4. **Rotation** (`--watch`). Re-read the secret every `--interval`; when it changes, log in
//!    with the new password, then close the old connection. SIGINT or SIGTERM ends the loop.
//!
//! stdout carries only the outcome (`connected as <user>`, `reconnected as <user> (secret
//! version N)`); diagnostics go to stderr. The password is never printed.

mod config;
mod credentials;
mod database;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sqlx::PgConnection;
use tokio::time::MissedTickBehavior;

use crate::config::Config;
use crate::credentials::{DbCredentials, SecretRef};
use crate::database::Database;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    match run(&config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("db-app: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the app talks to, set up once.
struct App {
    nexus: nexus_api::Client,
    own_id: String,
    secret: SecretRef,
    database: Database,
}

impl App {
    /// Steps 1 and 2: our SVID, and a Nexus client that presents it.
    async fn start(config: &Config) -> anyhow::Result<App> {
        let source = identity::workload::x509_source(None, config.svid_timeout)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "no SVID from the Workload API ({e}): is SPIFFE_ENDPOINT_SOCKET set, and is \
                     this binary registered with the SPIFFE server?"
                )
            })?;
        let own_id = identity::workload::own_id(&source)?;
        let trust_domain = config.nexus_trust_domain(own_id.trust_domain_name());
        let nexus = nexus_api::Client::connect(source, &config.nexus_url, &trust_domain)
            .with_context(|| format!("setting up the client for Nexus at {}", config.nexus_url))?;
        Ok(App {
            nexus,
            own_id: own_id.to_string(),
            secret: SecretRef {
                path: config.secret_path.clone(),
                username_key: config.username_key.clone(),
                password_key: config.key.clone(),
            },
            database: Database {
                host: config.db_host.clone(),
                port: config.db_port,
                name: config.db_name.clone(),
            },
        })
    }

    /// Step 3: logs in to PostgreSQL with `credentials`.
    async fn log_in(&self, credentials: &DbCredentials) -> anyhow::Result<(PgConnection, String)> {
        let db = &self.database;
        self.database.connect(credentials).await.with_context(|| {
            format!(
                "logging in to PostgreSQL at {}:{} (database {}) as {} with the password \
                 from secret `{}` version {}",
                db.host,
                db.port,
                db.name,
                credentials.username,
                self.secret.path,
                credentials.version
            )
        })
    }

    /// The current login from Nexus.
    async fn credentials(&self) -> Result<DbCredentials, credentials::CredentialsError> {
        self.secret.fetch(&self.nexus, &self.own_id).await
    }
}

async fn run(config: &Config) -> anyhow::Result<()> {
    let app = App::start(config).await?;
    let credentials = app.credentials().await?;
    let (conn, user) = app.log_in(&credentials).await?;
    println!("connected as {user}");
    if config.watch {
        watch(&app, credentials, conn, config.interval).await
    } else {
        database::close(conn).await;
        Ok(())
    }
}

/// Step 4: follows the secret until SIGINT or SIGTERM.
///
/// A failed read or login is reported and retried on the next tick while the current
/// connection stays in use: a password is typically changed in the database and in Nexus a
/// moment apart, in either order.
async fn watch(
    app: &App,
    mut current: DbCredentials,
    mut conn: PgConnection,
    every: Duration,
) -> anyhow::Result<()> {
    let shutdown = shutdown_signal().context("listening for SIGINT and SIGTERM")?;
    tokio::pin!(shutdown);
    eprintln!(
        "db-app: watching secret `{}` every {}",
        app.secret.path,
        humantime::format_duration(every)
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; we have just read the secret.
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticks.tick() => {}
        }
        let fresh = match app.credentials().await {
            Ok(fresh) if fresh != current => fresh,
            Ok(_) => continue,
            Err(error) => {
                eprintln!("db-app: {error}; keeping the current connection");
                continue;
            }
        };
        match app.log_in(&fresh).await {
            Ok((new_conn, user)) => {
                println!("reconnected as {user} (secret version {})", fresh.version);
                database::close(std::mem::replace(&mut conn, new_conn)).await;
                current = fresh;
            }
            Err(error) => eprintln!("db-app: {error:#}; keeping the current connection"),
        }
    }
    eprintln!("db-app: shutting down");
    database::close(conn).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; both are caught from the moment this is called.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
