//! `spire-agent run`: establish the agent's identity, sync once, then serve the Workload API
//! while the sync loop keeps SVIDs fresh, until SIGINT or SIGTERM, or until a background task
//! that cannot be restarted (the sync loop, refused by the server) failed: then it exits
//! non-zero. At shutdown the socket stops accepting, Workload API streams end at once (their
//! clients reconnect elsewhere) and unary calls in flight get `-drainTimeout` to finish.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use common_net::HttpServer;
use common_net::unix::unix_incoming;
use futures::StreamExt;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tonic::service::Routes;
use tower::ServiceBuilder;

use crate::config::AgentConfig;
use crate::jwt_svids::JwtSvids;
use crate::manager::Manager;
use crate::node::{self, DataDir, NodeError};
use crate::workload::api::{WorkloadApi, require_security_header};
use crate::workload::attestor::UnixAttestor;
use crate::workload::authority::AuthorityFix;
use crate::workload::limits::CallerLimits;

/// Runs the agent until a shutdown signal arrives.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    common_process::raise_open_files_limit(
        config.limits.workload_api.max_connections as u64
            + config.limits.metrics.descriptors()
            + 256,
    );
    let data = DataDir::open(&config.data_dir)?;
    let (link, agent_svid) = node::establish(&config, &data).await?;
    let agent_id = agent_svid.id.clone();
    let jwt = Arc::new(JwtSvids::new(link.clone()));
    let (mut manager, cache) = Manager::new(
        link,
        data,
        agent_svid,
        config.trust_domain.clone(),
        config.sync_interval,
        config.x509pop.clone(),
    );
    if let Err(e) = manager.sync().await {
        manager
            .recover(e)
            .await
            .map_err(|e| stopped(e, &agent_id))?;
    }
    // Every background task runs under the supervisor: none fails unnoticed.
    let supervisor = common_process::Supervisor::new();
    {
        let agent_id = agent_id.clone();
        // Exit on failure: the sync loop (which also renews the agent's SVID) only ends when
        // the server will not take this agent back, and a panic in it leaves the SVID cache
        // stale; either way the agent stops serving and exits non-zero.
        supervisor.exit_on_failure("agent_sync", async move {
            let refused = manager.run().await;
            Err::<(), _>(format!("{:#}", stopped(refused, &agent_id)))
        });
    }

    let listener = bind_workload_socket(&config.socket_path)?;
    let attestor = Arc::new(UnixAttestor::new(config.workload_size_limit));
    let metrics = crate::metrics::AgentMetrics::default();
    // Every listener's refusals and timeouts, on the metrics endpoint.
    let net = common_net::NetMetrics::default();
    if let Some(address) = config.metrics_address {
        common_metrics::start(
            address,
            metrics.registry(cache.clone()),
            || async {},
            config.limits.metrics,
            &net,
            &supervisor,
        )
        .await
        .with_context(|| format!("binding the metrics address {address}"))?;
    }
    let limits = CallerLimits::new(config.workload_limits);
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let api = WorkloadApi::new(cache, stopping_rx, attestor, jwt, limits, metrics.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SpiffeWorkloadApiServer<WorkloadApi>>()
        .await;
    let limits = config.workload_limits;
    tracing::info!(
        agent = %agent_id,
        socket = %config.socket_path.display(),
        rate_limit = limits.rate_per_second,
        rate_burst = limits.burst,
        max_streams = limits.max_streams,
        max_connections = config.limits.workload_api.max_connections,
        max_connections_per_uid = config.limits.workload_api.max_connections_per_source,
        max_connections_per_pid = config.limits.workload_api.max_connections_per_process,
        "agent ready"
    );
    let routes = Routes::new(health_service).add_service(
        SpiffeWorkloadApiServer::with_interceptor(api, require_security_header),
    );
    let workload = config.limits.workload_api;
    let workload_metrics = net.listener("workload_api");
    // Connections are admitted per UID and PID; clients that send their socket path as
    // :authority (py-spiffe) must get through h2.
    let incoming =
        unix_incoming(listener, &workload, workload_metrics.clone()).map(AuthorityFix::new);
    let stop = {
        let stop = supervisor.stop_requested();
        async move {
            stop.await;
            // Streams never finish by themselves: they end now, unary calls get the drain.
            let _ = stopping.send(true);
        }
    };
    // Exit on failure, like every listener: a panic while accepting must stop the agent with
    // a failure (counted), not take the process down unaccounted or look like a close.
    supervisor
        .exit_on_failure(
            "workload_api",
            HttpServer::new(workload, workload_metrics)
                .drain_timeout(config.drain_timeout)
                .http2_only()
                .serve(
                    incoming,
                    ServiceBuilder::new().layer(metrics.layer()).service(routes),
                    stop,
                ),
        )
        .ended()
        .await;
    supervisor.shutdown().await;
    let _ = std::fs::remove_file(&config.socket_path);
    Ok(supervisor.outcome()?)
}

/// The error the agent exits with when the server refused it for good.
fn stopped(e: NodeError, agent_id: &spiffe::SpiffeId) -> anyhow::Error {
    let what = match e {
        NodeError::Banned(_) => format!("agent {agent_id} is banned; its stored SVID was removed"),
        NodeError::NotAttested(_) => format!(
            "agent {agent_id} needs to attest again; its stored SVID was removed: start it with a new join token (-joinToken)"
        ),
        _ => format!("agent {agent_id} could not attest again and stopped"),
    };
    anyhow::Error::from(e).context(what)
}

/// The Workload API socket is for every local process (the standard requires no client
/// credentials; callers are identified through the kernel), so it is world-connectable.
fn bind_workload_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the Workload API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    Ok(listener)
}
