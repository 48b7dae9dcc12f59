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
use spiffe::SpiffeId;

/// Runs a keeper until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    common_process::harden();
    // Checked before anything starts: a bad trust domain is one clear error.
    let nexus_domains = config.nexus_domains()?;
    let roles = config.roles()?;
    let limits = config.serve_limits()?;
    common_process::raise_open_files_limit(
        limits.descriptors() + common_net::Limits::METRICS.descriptors() + 64,
    );
    let net = common_net::NetMetrics::default();
    let supervisor = common_process::Supervisor::new();
    if let Some(address) = config.metrics_address()? {
        serve_metrics(address, &net, &supervisor).await?;
    }
    let source = identity::workload::x509_source(
        config.spiffe_endpoint_socket.as_deref(),
        Duration::from_secs(30),
    )
    .await
    .context("getting this keeper's SVID from the Workload API")?;
    let only_nexus = {
        let roles = roles.clone();
        move |peer: &SpiffeId| roles.role_of(&peer.to_string()) == Some(policies::Role::Nexus)
    };
    let tls = identity::workload::server_config(source.clone(), nexus_domains, only_nexus)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "keeper ready");
    let shard = Arc::new(shard::ShardSlot::default());
    let app = routes::router(shard.clone(), roles, Some(source));
    let stop = supervisor.stop_requested();
    // Exit on failure, like every listener: a panic in its accept loop must stop the process
    // with a failure, not look like a listener that closed.
    supervisor
        .exit_on_failure(
            "api",
            identity::http::serve(
                listener,
                Arc::new(tls),
                app,
                identity::http::ServeOptions::new(limits, net.listener("api"))
                    .drain_timeout(config.drain_timeout),
                stop,
            ),
        )
        .ended()
        .await;
    supervisor.shutdown().await;
    // The shard is zeroized as its last holder (this one, once the connections are gone)
    // drops it.
    drop(shard);
    Ok(supervisor.outcome()?)
}

/// Serves the listeners' counters (the keeper has no others) at `address`.
async fn serve_metrics(
    address: std::net::SocketAddr,
    net: &common_net::NetMetrics,
    supervisor: &common_process::Supervisor,
) -> anyhow::Result<()> {
    // A keeper exiting because its metrics listener failed loses its shard; Nexus re-seeds
    // it once the keeper is back.
    common_metrics::start(
        address,
        prometheus_client::registry::Registry::with_prefix("keeper"),
        || async {},
        common_net::Limits::METRICS,
        net,
        supervisor,
    )
    .await
    .with_context(|| format!("binding the metrics address {address}"))
}
