//! A keeper holds one Shamir shard of Nexus's root key, in memory only, and gives it back to
//! Nexus (and only Nexus, checked at the TLS handshake) so a restarted Nexus can rebuild its
//! key without a human.
//!
//! - [`shard`]: the in-memory slot (zeroized on replacement and drop).
//! - [`authz`]: who may call which route (Nexus, for all of them).
//! - [`routes`]: the SPIKE-compatible HTTP routes, built from that table.
//! - Hardening (no core dumps, memory locked) comes from `common_process::harden`.

pub mod authz;
pub mod routes;
pub mod shard;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spiffe::{SpiffeId, TrustDomain};

/// Keeper configuration: flags, then environment variables, then a TOML file (`--config`),
/// then defaults.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "keeper",
    version,
    about = "Holds one shard of Nexus's root key, in memory only"
)]
pub struct Config {
    /// TOML file whose keys (the options below in snake case, e.g. `listen = "..."`) set
    /// defaults that flags and environment variables override.
    #[arg(long, env = "SPIKE_KEEPER_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SPIKE_KEEPER_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Trust domain of Nexus (only `spiffe://<td>/spike/nexus[/...]` may call).
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS", default_value = "spike.ist")]
    pub trust_domain: String,
    /// Workload API socket (`unix:///path`); defaults to `SPIFFE_ENDPOINT_SOCKET`.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    pub spiffe_endpoint_socket: Option<String>,
    /// Log level.
    #[arg(long, env = "SPIKE_KEEPER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Runs a keeper until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    common_process::harden();
    let td = TrustDomain::new(&config.trust_domain).context("invalid --trust-domain")?;
    let source = identity::workload::x509_source(
        config.spiffe_endpoint_socket.as_deref(),
        Duration::from_secs(30),
    )
    .await
    .context("getting this keeper's SVID from the Workload API")?;
    let td_name = td.to_string();
    let only_nexus = move |peer: &SpiffeId| {
        policies::role_of(&td_name, &peer.to_string()) == Some(policies::Role::Nexus)
    };
    let tls = identity::workload::server_config(source, td, only_nexus)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "keeper ready");
    let app = routes::router(Arc::new(shard::ShardSlot::default()), &config.trust_domain);
    identity::http::serve(
        listener,
        Arc::new(tls),
        app,
        identity::http::ServeLimits::default(),
        common_process::shutdown_signal(),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_file_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/config/keeper.toml"
        );
        let config: Config =
            common_process::config_file::try_parse_from(["keeper", "--config", path])
                .expect("valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.trust_domain, "example.org");
        let config: Config = common_process::config_file::try_parse_from([
            "keeper",
            "--config",
            path,
            "--listen",
            "127.0.0.1:9000",
        ])
        .expect("valid");
        assert_eq!(
            config.listen.to_string(),
            "127.0.0.1:9000",
            "flags override the file"
        );
    }
}
