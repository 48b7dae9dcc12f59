//! The entries an agent may have workload SVIDs for, as a type. An [`AuthorizedEntry`] is
//! made only here, from the caller's [`AgentGrant`] and the entries its agent is authorised
//! for ([`entries::authorized_for`]), and the functions that sign workload SVIDs are its
//! methods: a handler cannot sign for an entry without the authoriser's proof that the
//! agent called, nor for an entry that is not that agent's.

use std::time::Duration;

use spiffe::SpiffeId;
use tonic::Status;

use crate::api::authz::AgentGrant;
use crate::api::ca_status;
use crate::ca::{SignedJwtSvid, SignedSvid};
use crate::datastore;
use crate::entries;
use crate::state::ServerState;

/// An unexpired entry the granted agent may have SVIDs for.
pub(super) struct AuthorizedEntry {
    entry: datastore::Entry,
}

impl AuthorizedEntry {
    /// The entries of `all` that `grant`'s agent is authorised for and that have not
    /// expired at `now` (unix seconds).
    pub(super) fn for_agent(
        grant: &AgentGrant,
        all: &[datastore::Entry],
        now: i64,
    ) -> Vec<AuthorizedEntry> {
        entries::authorized_for(&grant.agent().to_string(), all)
            .into_iter()
            .filter(|e| e.expires_at == 0 || e.expires_at > now)
            .map(|entry| AuthorizedEntry {
                entry: entry.clone(),
            })
            .collect()
    }

    /// The entry.
    pub(super) fn entry(&self) -> &datastore::Entry {
        &self.entry
    }

    /// The entry, no longer usable for signing.
    pub(super) fn into_entry(self) -> datastore::Entry {
        self.entry
    }

    fn spiffe_id(&self) -> Result<SpiffeId, String> {
        SpiffeId::new(&self.entry.spiffe_id).map_err(|e| format!("stored entry is corrupt: {e}"))
    }

    /// An X509-SVID for the entry from `csr`, for the entry's TTL (`default_ttl` if it
    /// names none).
    pub(super) fn sign_x509(
        &self,
        state: &ServerState,
        csr: &[u8],
        default_ttl: Duration,
    ) -> Result<SignedSvid, String> {
        let id = self.spiffe_id()?;
        let ttl = ttl_or(self.entry.x509_svid_ttl, default_ttl);
        state
            .ca()
            .sign_csr(csr, &id, ttl, &self.entry.dns_names)
            .map_err(|e| e.to_string())
    }

    /// A JWT-SVID for the entry and `audience`, for the entry's TTL (the configured
    /// default if it names none).
    pub(super) fn sign_jwt(
        &self,
        state: &ServerState,
        audience: &[String],
    ) -> Result<SignedJwtSvid, Status> {
        let id = self.spiffe_id().map_err(Status::internal)?;
        let ttl = ttl_or(self.entry.jwt_svid_ttl, state.config.default_jwt_svid_ttl);
        state
            .jwt()
            .sign_as(&id, audience, ttl, state.config.jwt_issuer.as_deref())
            .map_err(ca_status)
    }
}

/// An entry's TTL in seconds, `default` if it is not positive.
fn ttl_or(seconds: i64, default: Duration) -> Duration {
    match u64::try_from(seconds) {
        Ok(secs) if secs > 0 => Duration::from_secs(secs),
        _ => default,
    }
}
