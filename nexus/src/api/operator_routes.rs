//! `/v1/operator/recover` and `/v1/operator/restore`: break-glass, each for exactly one
//! Pilot role, never grantable through policies; `/v1/operator/rotate`, `/v1/operator/seal`,
//! `/v1/operator/unseal` and `/v1/operator/rekey`, the superuser's.

use axum::response::Response;
use nexus_api::model::{Empty, RecoverResponse, RekeyRequest, RestoreRequest, RotateResponse};
use nexus_api::routes;

use super::endpoint::{Call, Endpoint};
use super::{ApiError, ok};
use crate::keys::{break_glass, operator_seal, rekey, rotation};

/// `/v1/operator/recover`: every recovery shard.
pub(super) struct Recover;

impl Endpoint for Recover {
    const ROUTE: &'static str = routes::RECOVER;
    type Request = Empty;

    async fn serve(call: Call<'_, Empty>) -> Result<Response, ApiError> {
        let shards = break_glass::recover(call.nexus, &call.grant).await?;
        Ok(ok(RecoverResponse { shards }))
    }
}

/// `/v1/operator/restore`: one recovery shard.
pub(super) struct Restore;

impl Endpoint for Restore {
    const ROUTE: &'static str = routes::RESTORE;
    type Request = RestoreRequest;

    async fn serve(call: Call<'_, RestoreRequest>) -> Result<Response, ApiError> {
        let Call {
            nexus,
            grant,
            request,
            audit,
        } = call;
        audit.target = format!("shard {}", request.id);
        let restored = break_glass::restore(nexus, &grant, request.id, &request.shard).await?;
        Ok(ok(restored))
    }
}

/// `/v1/operator/rotate`: a new root key.
pub(super) struct Rotate;

impl Endpoint for Rotate {
    const ROUTE: &'static str = routes::ROTATE;
    type Request = Empty;

    async fn serve(call: Call<'_, Empty>) -> Result<Response, ApiError> {
        let rotated = rotation::rotate(call.nexus, &call.grant).await?;
        Ok(ok(RotateResponse {
            rewrapped: rotated.rewrapped,
            duration_ms: u64::try_from(rotated.duration.as_millis()).unwrap_or(u64::MAX),
        }))
    }
}

/// `/v1/operator/seal`: the root key out of memory until an unseal. Answers the status.
pub(super) struct Seal;

impl Endpoint for Seal {
    const ROUTE: &'static str = routes::SEAL;
    type Request = Empty;

    async fn serve(call: Call<'_, Empty>) -> Result<Response, ApiError> {
        Ok(ok(operator_seal::seal(call.nexus, &call.grant).await?))
    }
}

/// `/v1/operator/unseal`: the operator's seal lifted, the key back from the keepers.
/// Answers the status.
pub(super) struct Unseal;

impl Endpoint for Unseal {
    const ROUTE: &'static str = routes::UNSEAL;
    type Request = Empty;

    async fn serve(call: Call<'_, Empty>) -> Result<Response, ApiError> {
        Ok(ok(operator_seal::unseal(call.nexus, &call.grant).await?))
    }
}

/// `/v1/operator/rekey`: a new keeper set and threshold, optionally a new root key.
pub(super) struct Rekey;

impl Endpoint for Rekey {
    const ROUTE: &'static str = routes::REKEY;
    type Request = RekeyRequest;

    async fn serve(call: Call<'_, RekeyRequest>) -> Result<Response, ApiError> {
        let Call {
            nexus,
            grant,
            request,
            audit,
        } = call;
        audit.target = format!(
            "{} of {} keepers{}",
            request.threshold,
            request.keepers.len(),
            if request.new_root_key {
                ", new root key"
            } else {
                ""
            }
        );
        Ok(ok(rekey::rekey(nexus, &grant, &request).await?))
    }
}
