//! `/v1/operator/recover` and `/v1/operator/restore`: break-glass, each for exactly one
//! Pilot role, never grantable through policies; `/v1/operator/rotate`, the superuser's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use identity::http::CallerId;
use nexus_api::model::{Empty, RecoverResponse, RestoreRequest, RotateResponse};
use nexus_api::routes;
use policies::Role;

use super::audit::Audit;
use super::{ApiError, body, ok, parse};
use crate::service::Nexus;

fn require_role(nexus: &Nexus, audit: &mut Audit<'_>, role: Role) -> Result<(), ApiError> {
    if nexus.access.role(audit.caller()) == Some(role) {
        audit.decision = "allow";
        Ok(())
    } else {
        audit.decision = "deny";
        Err(ApiError::unauthorized(
            audit.caller(),
            format!(
                "use {} (only {role} may)",
                role.spiffe_id(nexus.access.trust_domain())
            ),
        ))
    }
}

pub async fn recover(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::RECOVER);
    let outcome = async {
        let _: Empty = parse(&body(request)?)?;
        require_role(&nexus, &mut audit, Role::Recover)?;
        let shards = nexus.recover().await?;
        Ok(ok(RecoverResponse { shards }))
    }
    .await;
    audit.finish(outcome)
}

pub async fn rotate(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::ROTATE);
    let outcome = async {
        let _: Empty = parse(&body(request)?)?;
        require_role(&nexus, &mut audit, Role::Superuser)?;
        nexus.root()?;
        let rotated = crate::keys::rotation::rotate(&nexus).await?;
        Ok(ok(RotateResponse {
            rewrapped: rotated.rewrapped,
            duration_ms: u64::try_from(rotated.duration.as_millis()).unwrap_or(u64::MAX),
        }))
    }
    .await;
    audit.finish(outcome)
}

pub async fn restore(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::RESTORE);
    let outcome = async {
        let request: RestoreRequest = parse(&body(request)?)?;
        require_role(&nexus, &mut audit, Role::Restore)?;
        audit.target = format!("shard {}", request.id);
        Ok(ok(nexus.restore(request.id, &request.shard).await?))
    }
    .await;
    audit.finish(outcome)
}
