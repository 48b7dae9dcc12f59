//! [`Requirement::Agent`](super::Requirement::Agent): the caller is an agent as SPIRE's agent
//! authoriser decides it: authenticated by an agent SVID, still on record (not evicted),
//! not banned, and calling with its *current* SVID. An SVID issued by a renewal is accepted
//! too, and its first use makes it current (SPIRE's `new_serial_number`); from then on the
//! SVID it replaced is refused, so a superseded agent SVID stops working as soon as its
//! successor is in use. Refusals carry a [`refusal::Reason`] that tells the agent whether to
//! attest again.

use identity::listener::PeerInfo;
use spiffe::SpiffeId;
use spire_proto::refusal::{self, Reason};
use tonic::Status;

use crate::api::datastore_status;
use crate::datastore::AttestedAgent;
use crate::state::ServerState;

/// The calling agent, if it is one in good standing with its current SVID.
pub(super) async fn current(
    state: &ServerState,
    peer: Option<&PeerInfo>,
) -> Result<SpiffeId, Status> {
    let (Some(id), Some(serial)) = (
        peer.and_then(|p| p.spiffe_id.clone()),
        peer.and_then(|p| p.serial_number.clone()),
    ) else {
        return Err(Status::unauthenticated(
            "an agent SVID is required for this call",
        ));
    };
    let Some(agent) = attested_agent(state, &id).await? else {
        tracing::warn!(agent = %id, "agent is not attested");
        return Err(refusal::permission_denied(
            Reason::AgentNotAttested,
            format!("agent \"{id}\" is not attested"),
        ));
    };
    if agent.banned {
        tracing::warn!(agent = %id, "agent is banned");
        return Err(refusal::permission_denied(
            Reason::AgentBanned,
            format!("agent \"{id}\" is banned"),
        ));
    }
    if serial == agent.serial_number || activate(state, &id, &agent, &serial).await? {
        return Ok(id);
    }
    tracing::warn!(agent = %id, svid_serial = %serial, serial = %agent.serial_number, "agent SVID is not active");
    Err(refusal::permission_denied(
        Reason::AgentNotActive,
        format!(
            "agent \"{id}\" expected to have serial number \"{}\"; has \"{serial}\"",
            agent.serial_number
        ),
    ))
}

async fn attested_agent(
    state: &ServerState,
    id: &SpiffeId,
) -> Result<Option<AttestedAgent>, Status> {
    state
        .datastore
        .get_attested_agent(&id.to_string())
        .await
        .map_err(datastore_status)
}

/// Makes the agent's pending SVID current if `serial` is its serial number; whether the
/// caller's SVID is now the current one.
async fn activate(
    state: &ServerState,
    id: &SpiffeId,
    agent: &AttestedAgent,
    serial: &str,
) -> Result<bool, Status> {
    if agent.new_serial_number.is_empty() || serial != agent.new_serial_number {
        return Ok(false);
    }
    let activated = state
        .datastore
        .activate_agent_svid(&id.to_string(), serial)
        .await
        .map_err(datastore_status)?;
    if activated {
        tracing::info!(agent = %id, serial, "renewed agent SVID in use; the previous one is no longer accepted");
        return Ok(true);
    }
    // A concurrent call with the same new SVID may have activated it first.
    Ok(attested_agent(state, id)
        .await?
        .is_some_and(|a| !a.banned && a.serial_number == serial))
}
