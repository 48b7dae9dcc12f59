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
        let RestoreRequest { id, shard } = &call.request;
        call.audit.target = format!("shard {id}");
        Ok(ok(break_glass::restore(
            call.nexus,
            &call.grant,
            *id,
            shard,
        )
        .await?))
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

/// `/v1/operator/seal` ([`Seal`]: the root key out of memory until an unseal) and
/// `/v1/operator/unseal` ([`Unseal`]: the operator's seal lifted, the key back from the
/// keepers). Each answers the status.
pub(super) struct SealChange<const LIFT: bool>;

/// `/v1/operator/seal`.
pub(super) type Seal = SealChange<false>;
/// `/v1/operator/unseal`.
pub(super) type Unseal = SealChange<true>;

impl<const LIFT: bool> Endpoint for SealChange<LIFT> {
    const ROUTE: &'static str = if LIFT { routes::UNSEAL } else { routes::SEAL };
    type Request = Empty;

    async fn serve(call: Call<'_, Empty>) -> Result<Response, ApiError> {
        let status = if LIFT {
            operator_seal::unseal(call.nexus, &call.grant).await?
        } else {
            operator_seal::seal(call.nexus, &call.grant).await?
        };
        Ok(ok(status))
    }
}

/// `/v1/operator/rekey`: a new keeper set and threshold, optionally a new root key.
pub(super) struct Rekey;

impl Endpoint for Rekey {
    const ROUTE: &'static str = routes::REKEY;
    type Request = RekeyRequest;

    async fn serve(call: Call<'_, RekeyRequest>) -> Result<Response, ApiError> {
        let request = &call.request;
        let root_key = if request.new_root_key {
            ", new root key"
        } else {
            ""
        };
        call.audit.target = format!(
            "{} of {} keepers{root_key}",
            request.threshold,
            request.keepers.len(),
        );
        Ok(ok(
            rekey::rekey(call.nexus, &call.grant, &call.request).await?
        ))
    }
}
