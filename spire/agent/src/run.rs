//! `spire-agent run`: establish the agent's identity, sync once, then serve the Workload API
//! while the sync loop keeps SVIDs fresh, until SIGINT or SIGTERM.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

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
    let mut manager = tokio::spawn(manager.run());

    let listener = bind_workload_socket(&config.socket_path)?;
    let attestor = Arc::new(UnixAttestor::new(config.workload_size_limit));
    let metrics = crate::metrics::AgentMetrics::default();
    if let Some(address) = config.metrics_address {
        let listener = common_metrics::bind(address)
            .await
            .with_context(|| format!("binding the metrics address {address}"))?;
        let registry = Arc::new(metrics.registry(cache.clone()));
        tokio::spawn(common_metrics::serve(
            listener,
            registry,
            || async {},
            common_process::shutdown_signal(),
        ));
    }
    let limits = CallerLimits::new(config.workload_limits);
    let api = WorkloadApi::new(cache, attestor, jwt, limits, metrics.clone());
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
        "agent ready"
    );
    let serve = Server::builder()
        .layer(metrics.layer())
        .add_service(health_service)
        .add_service(SpiffeWorkloadApiServer::with_interceptor(
            api,
            require_security_header,
        ))
        .serve_with_incoming_shutdown(
            // Clients that send their socket path as :authority (py-spiffe) must get through h2.
            UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new)),
            common_process::shutdown_signal(),
        );
    // The sync loop only ends when the server will not take this agent back: stop serving.
    let result = tokio::select! {
        served = serve => served.map_err(anyhow::Error::from),
        refused = &mut manager => Err(match refused {
            Ok(e) => stopped(e, &agent_id),
            Err(e) => anyhow::Error::from(e).context("the sync loop failed"),
        }),
    };
    let _ = std::fs::remove_file(&config.socket_path);
    result
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
