//! A keeper holds one Shamir shard of Nexus's root key, in memory only, and gives it back to
//! Nexus (and only Nexus, checked at the TLS handshake) so a restarted Nexus can rebuild its
//! key without a human.
//!
//! - [`shard`]: the in-memory slot (zeroized on replacement and drop).
//! - [`authz`]: who may call which route (Nexus, for all of them).
//! - [`routes`]: the SPIKE-compatible HTTP routes, built from that table.
//! - [`config`]: flags, environment and config file, including the listener's limits.
//! - Hardening (no core dumps, memory locked) comes from `common_process::harden`.

pub mod authz;
pub mod config;
pub mod routes;
pub mod shard;

pub use config::Config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spiffe::{SpiffeId, TrustDomain};

/// Runs a keeper until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    common_process::harden();
    let td = TrustDomain::new(&config.trust_domain).context("invalid --trust-domain")?;
    let limits = config.serve_limits()?;
    common_process::raise_open_files_limit(
        limits.descriptors() + common_net::Limits::METRICS.descriptors() + 64,
    );
    let net = common_net::NetMetrics::default();
    if let Some(address) = config.metrics_address()? {
        serve_metrics(address, &net).await?;
    }
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
        identity::http::ServeOptions::new(limits, net.listener("api")),
        common_process::shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Serves the listeners' counters (the keeper has no others) at `address`.
async fn serve_metrics(
    address: std::net::SocketAddr,
    net: &common_net::NetMetrics,
) -> anyhow::Result<()> {
    let listener = common_metrics::bind(address)
        .await
        .with_context(|| format!("binding the metrics address {address}"))?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("keeper");
    net.register(&mut registry);
    tokio::spawn(common_metrics::serve(
        listener,
        Arc::new(registry),
        || async {},
        common_net::Limits::METRICS,
        net.listener("metrics"),
        common_process::shutdown_signal(),
    ));
    Ok(())
}
