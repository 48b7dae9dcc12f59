//! Who may call what, decided in one place.
//!
//! [`TABLE`] lists every gRPC method of the agent API, the admin API and the admin socket's
//! health service with what its caller must hold ([`Requirement`]), in the spirit of SPIRE's
//! `authpolicy`. [`Authorize`] wraps each listener's routes: it looks the method up, refuses
//! one the table does not list, judges the caller ([`authorize`]) and leaves the proof on
//! the request for the handler ([`AgentGrant`], [`AdminGrant`]). Only this module can make
//! a proof, and the functions that change entries, agents and bundles or sign SVIDs for a
//! caller take one, so a handler cannot skip the check.
//!
//! The caller is known from the transport: the agent API's TLS listener leaves
//! [`PeerInfo`] (the client SVID's SPIFFE ID and serial number) on each request, the admin
//! socket leaves [`UnixPeer`] (the kernel's credentials of the calling process).

mod agent;
mod grant;
mod layer;
mod table;

use common_net::unix::UnixPeer;
use identity::listener::PeerInfo;
use tonic::Status;

pub use grant::{AdminGrant, AgentGrant};
pub use layer::{Authorize, AuthorizeLayer};
pub use table::{ADMIN, AGENT, HEALTH, Requirement, Rule, TABLE, requirement};

use crate::state::ServerState;

/// Judges the caller of the method at gRPC `path` from what the transport left in
/// `extensions`, and on success leaves there the proof its requirement gives.
pub async fn authorize(
    state: &ServerState,
    path: &str,
    extensions: &mut http::Extensions,
) -> Result<(), Status> {
    let Some(requirement) = requirement(path) else {
        tracing::warn!(
            path,
            "refused a method the authorisation table does not list"
        );
        return Err(Status::permission_denied(format!(
            "{path} is not a method of this server"
        )));
    };
    match requirement {
        Requirement::Anyone => {}
        Requirement::Agent => {
            let agent = agent::current(state, extensions.get::<PeerInfo>()).await?;
            extensions.insert(AgentGrant::new(agent));
        }
        Requirement::Admin => {
            let Some(peer) = extensions.get::<UnixPeer>().copied() else {
                return Err(Status::permission_denied(format!(
                    "{path} is served only on the admin socket"
                )));
            };
            extensions.insert(AdminGrant::new(peer));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
