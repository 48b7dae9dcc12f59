//! Attested agents: list, count, evict, ban and purge.

use spiffe::SpiffeId;
use spire_proto::server as pb;
use tonic::Status;

use crate::api::authz::AdminGrant;
use crate::api::datastore_status;
use crate::datastore::{self, DatastoreError};
use crate::entries;
use crate::state::ServerState;

fn to_proto(a: &datastore::AttestedAgent) -> pb::AttestedAgent {
    pb::AttestedAgent {
        spiffe_id: a.spiffe_id.clone(),
        attestation_type: a.attestation_type.clone(),
        serial_number: a.serial_number.clone(),
        expires_at: a.expires_at,
        selectors: entries::selectors_to_proto(&a.selectors),
        can_reattest: a.can_reattest,
        banned: a.banned,
    }
}

pub(super) async fn list(
    state: &ServerState,
    _admin: &AdminGrant,
) -> Result<pb::ListAgentsResponse, Status> {
    let agents = state
        .datastore
        .list_attested_agents()
        .await
        .map_err(datastore_status)?;
    Ok(pb::ListAgentsResponse {
        agents: agents.iter().map(to_proto).collect(),
    })
}

pub(super) async fn count(
    state: &ServerState,
    _admin: &AdminGrant,
) -> Result<pb::CountResponse, Status> {
    let count = state
        .datastore
        .count_attested_agents()
        .await
        .map_err(datastore_status)?;
    Ok(pb::CountResponse { count })
}

/// Forgets the agent: its SVID is refused from now on, and it may attest again.
pub(super) async fn evict(
    state: &ServerState,
    _admin: &AdminGrant,
    raw: &str,
) -> Result<pb::Empty, Status> {
    let id = parse_id(state, raw)?;
    let evicted = state.datastore.delete_attested_agent(&id.to_string()).await;
    on_record(evicted, &id)?;
    tracing::info!(agent = %id, "agent evicted");
    Ok(pb::Empty {})
}

/// Refuses the agent from now on, attestation included, until it is evicted.
pub(super) async fn ban(
    state: &ServerState,
    _admin: &AdminGrant,
    raw: &str,
) -> Result<pb::Empty, Status> {
    let id = parse_id(state, raw)?;
    if !id.path().starts_with("/spire/agent/") {
        return Err(Status::invalid_argument(format!(
            "{id} is not an agent ID (spiffe://<td>/spire/agent/...)"
        )));
    }
    let banned = state.datastore.ban_attested_agent(&id.to_string()).await;
    on_record(banned, &id)?;
    tracing::warn!(agent = %id, "agent banned");
    Ok(pb::Empty {})
}

fn parse_id(state: &ServerState, raw: &str) -> Result<SpiffeId, Status> {
    entries::parse_id("spiffeID", raw, &state.config.trust_domain).map_err(Status::invalid_argument)
}

/// A change to one agent's record: refused if there was no such record.
fn on_record(changed: Result<bool, DatastoreError>, id: &SpiffeId) -> Result<(), Status> {
    if changed.map_err(datastore_status)? {
        Ok(())
    } else {
        Err(Status::not_found(format!("no attested agent {id}")))
    }
}

/// Removes the agents whose SVID expired before the given time (or only lists them).
pub(super) async fn purge(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::PurgeAgentsRequest,
) -> Result<pb::PurgeAgentsResponse, Status> {
    if req.expired_before > state.clock.unix_seconds() {
        return Err(Status::invalid_argument(
            "expired_before is in the future; -expiredFor must not be negative",
        ));
    }
    let purged = state
        .datastore
        .purge_expired_agents(req.expired_before, req.dry_run)
        .await
        .map_err(datastore_status)?;
    if !req.dry_run {
        for agent in &purged {
            tracing::info!(agent = %agent.spiffe_id, "expired agent purged");
        }
    }
    Ok(pb::PurgeAgentsResponse {
        agents: purged.iter().map(to_proto).collect(),
    })
}
