//! Process plumbing both binaries share: logging set-up, shutdown signals and the gRPC health
//! check their `healthcheck` commands run against a local socket.

use std::path::Path;

/// Logs to stderr at `level`, unless `RUST_LOG` says otherwise.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// Asks the `grpc.health.v1.Health` service on the Unix socket at `socket` whether it is
/// serving. The error says why not.
pub async fn healthcheck(socket: &Path) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let channel = crate::uds::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| e.message().to_owned())?;
    if response.into_inner().status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err("not serving".into())
    }
}
