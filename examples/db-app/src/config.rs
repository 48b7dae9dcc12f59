//! Command-line flags, each with an environment variable as fallback.
//!
//! Nothing here is secret: the database password is never configured, it comes from Nexus.
//! The Workload API socket is not a flag either; like every SPIFFE client, the app reads
//! `SPIFFE_ENDPOINT_SOCKET`.

use std::time::Duration;

use clap::Parser;

/// Logs in to PostgreSQL with credentials read from SPIKE Nexus over SPIFFE mTLS.
#[derive(Debug, Parser)]
#[command(name = "db-app", version)]
pub struct Config {
    /// Nexus's URL.
    #[arg(
        long,
        env = "SPIKE_NEXUS_API_URL",
        default_value = "https://localhost:8553"
    )]
    pub nexus_url: String,

    /// Nexus's trust domain (SPIKE allows a comma-separated list). Default: our own.
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS")]
    pub trust_domain: Option<String>,

    /// The secret holding the database login.
    #[arg(long, env = "DB_APP_SECRET_PATH", default_value = "db/password")]
    pub secret_path: String,

    /// The secret's key holding the password.
    #[arg(long, env = "DB_APP_SECRET_KEY", default_value = "password")]
    pub key: String,

    /// The secret's key holding the user name.
    #[arg(long, env = "DB_APP_USERNAME_KEY", default_value = "username")]
    pub username_key: String,

    /// PostgreSQL host.
    #[arg(long, env = "PGHOST", default_value = "127.0.0.1")]
    pub db_host: String,

    /// PostgreSQL port.
    #[arg(long, env = "PGPORT", default_value_t = 5432)]
    pub db_port: u16,

    /// Database to connect to.
    #[arg(long, env = "PGDATABASE", default_value = "postgres")]
    pub db_name: String,

    /// Keep running: re-read the secret every `--interval` and reconnect when it changes.
    #[arg(long)]
    pub watch: bool,

    /// How often `--watch` re-reads the secret (`500ms`, `2s`, `1m`).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// How long to wait for an SVID from the Workload API.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub svid_timeout: Duration,
}

impl Config {
    /// Nexus's trust domain: the configured one (ours wins if listed, as in SPIKE, else the
    /// first), or our own when none is configured.
    pub fn nexus_trust_domain(&self, own: &str) -> String {
        let listed: Vec<&str> = self
            .trust_domain
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|td| !td.is_empty())
            .collect();
        match listed.first() {
            Some(first) if !listed.contains(&own) => (*first).to_owned(),
            _ => own.to_owned(),
        }
    }
}
