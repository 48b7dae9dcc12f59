//! Bundles: ours, and those of the trust domains we federate with when set by hand.

use spire_proto::server as pb;
use tonic::Status;

use crate::api::authz::AdminGrant;
use crate::api::datastore_status;
use crate::federation;
use crate::state::{ServerState, bundle_to_proto};

/// This trust domain's bundle.
pub(super) async fn get(state: &ServerState, _admin: &AdminGrant) -> Result<pb::Bundle, Status> {
    state.bundle().await.map_err(datastore_status)
}

/// Stores another trust domain's bundle, checked first.
pub(super) async fn set_federated(
    state: &ServerState,
    _admin: &AdminGrant,
    bundle: pb::Bundle,
) -> Result<pb::Bundle, Status> {
    let td = federation::foreign_trust_domain(state, &bundle.trust_domain)?;
    let checked = federation::checked_bundle(&td, bundle)?;
    let stored = state
        .datastore
        .set_bundle(&checked)
        .await
        .map_err(datastore_status)?;
    tracing::info!(trust_domain = %td, sequence = stored.sequence_number, "federated bundle set");
    Ok(bundle_to_proto(&stored))
}

pub(super) async fn list_federated(
    state: &ServerState,
    _admin: &AdminGrant,
) -> Result<pb::ListBundlesResponse, Status> {
    let bundles = federation::list(state).await.map_err(datastore_status)?;
    Ok(pb::ListBundlesResponse {
        bundles: bundles.iter().map(bundle_to_proto).collect(),
    })
}

pub(super) async fn delete_federated(
    state: &ServerState,
    _admin: &AdminGrant,
    trust_domain: &str,
) -> Result<pb::Empty, Status> {
    let td = federation::foreign_trust_domain(state, trust_domain)?;
    let deleted = state
        .datastore
        .delete_bundle(td.as_str())
        .await
        .map_err(datastore_status)?;
    if !deleted {
        return Err(Status::not_found(format!("no bundle is stored for {td}")));
    }
    tracing::info!(trust_domain = %td, "federated bundle deleted");
    Ok(pb::Empty {})
}
