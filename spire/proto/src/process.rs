//! The gRPC health check the `healthcheck` commands of the server and agent run against their
//! local sockets.

use std::path::Path;

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
