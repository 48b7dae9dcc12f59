//! Minting SVIDs for a SPIFFE ID outside any entry (`x509 mint`, `jwt mint`).

use std::time::Duration;

use spiffe::SpiffeId;
use spire_proto::server as pb;
use tonic::Status;

use crate::api::agent::jwt_svid_to_proto;
use crate::api::authz::AdminGrant;
use crate::api::{ca_status, datastore_status};
use crate::entries;
use crate::state::ServerState;

/// Longest SVID `x509 mint` or `jwt mint` will issue.
pub const MAX_MINT_TTL: i32 = 7 * 24 * 3600;

/// The requested lifetime, or `default` for 0.
fn ttl(requested: i32, default: Duration) -> Result<Duration, Status> {
    if requested == 0 {
        Ok(default)
    } else if (1..=MAX_MINT_TTL).contains(&requested) {
        Ok(Duration::from_secs(requested.unsigned_abs().into()))
    } else {
        Err(Status::invalid_argument(format!(
            "ttl must be between 1 and {MAX_MINT_TTL} seconds"
        )))
    }
}

fn workload_id(state: &ServerState, raw: &str) -> Result<SpiffeId, Status> {
    entries::parse_workload_id("spiffeID", raw, &state.config.trust_domain)
        .map_err(Status::invalid_argument)
}

/// An X509-SVID with its private key and our bundle.
pub(super) async fn x509(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::MintX509SvidRequest,
) -> Result<pb::MintX509SvidResponse, Status> {
    let id = workload_id(state, &req.spiffe_id)?;
    let ttl = ttl(req.ttl, state.config.default_x509_svid_ttl)?;
    let minted = state
        .ca()
        .mint(&id, ttl, &req.dns_names)
        .map_err(ca_status)?;
    let bundle = state.bundle().await.map_err(datastore_status)?;
    state.metrics.signed("x509", "mint", 1);
    Ok(pb::MintX509SvidResponse {
        svid: Some(pb::X509Svid {
            spiffe_id: minted.svid.spiffe_id.to_string(),
            cert_chain: minted.svid.cert_chain.clone(),
            expires_at: minted.svid.expires_at,
        }),
        private_key: minted.private_key_pkcs8.to_vec(),
        bundle: Some(bundle),
    })
}

/// A JWT-SVID for the given audience.
pub(super) fn jwt(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::MintJwtSvidRequest,
) -> Result<pb::MintJwtSvidResponse, Status> {
    let id = workload_id(state, &req.spiffe_id)?;
    let ttl = ttl(req.ttl, state.config.default_jwt_svid_ttl)?;
    let svid = state
        .jwt()
        .sign_as(&id, &req.audience, ttl, state.config.jwt_issuer.as_deref())
        .map_err(ca_status)?;
    tracing::info!(spiffe_id = %id, "JWT-SVID minted");
    state.metrics.signed("jwt", "mint", 1);
    Ok(pb::MintJwtSvidResponse {
        svid: Some(jwt_svid_to_proto(svid)),
    })
}
