//! The proofs of authorisation. Their fields are private and their constructors visible to
//! [`super`] alone, so only the authoriser makes them; it leaves them in the request's
//! extensions, and the functions that change entries, agents and bundles or sign SVIDs for a
//! caller take one.

use common_net::unix::UnixPeer;
use spiffe::SpiffeId;
use tonic::{Request, Status};

/// Proof that the caller is an attested agent, not banned, calling with its current SVID.
#[derive(Debug, Clone)]
pub struct AgentGrant {
    agent: SpiffeId,
}

impl AgentGrant {
    pub(super) fn new(agent: SpiffeId) -> Self {
        AgentGrant { agent }
    }

    /// The agent's SPIFFE ID.
    pub fn agent(&self) -> &SpiffeId {
        &self.agent
    }

    /// The grant the authoriser left on `request`.
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        granted(request)
    }
}

/// Proof that the caller came through the admin socket.
#[derive(Debug, Clone)]
pub struct AdminGrant {
    peer: UnixPeer,
}

impl AdminGrant {
    pub(super) fn new(peer: UnixPeer) -> Self {
        AdminGrant { peer }
    }

    /// The local process that called, as the kernel named it.
    pub fn peer(&self) -> &UnixPeer {
        &self.peer
    }

    /// The grant the authoriser left on `request`.
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        granted(request)
    }
}

/// A grant of type `G` from `request`'s extensions. Its absence is a wiring fault (a service
/// served without the authoriser, or a table row out of step with its handler), refused
/// rather than trusted.
fn granted<G: Clone + Send + Sync + 'static, T>(request: &Request<T>) -> Result<G, Status> {
    request.extensions().get::<G>().cloned().ok_or_else(|| {
        tracing::error!(
            grant = std::any::type_name::<G>(),
            "a handler ran without the grant its table row gives; refused"
        );
        Status::internal("authorisation fault; see the server log")
    })
}
