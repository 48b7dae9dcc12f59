//! The `Agent` service: node attestation, agent SVID renewal, entry sync and workload SVID
//! signing (X.509 and JWT). Served over mTLS; every call but attestation must come from an
//! attested agent presenting its current agent SVID: the authoriser ([`crate::api::authz`])
//! decides that before a handler runs and hands the handler an [`AgentGrant`]. Workload
//! SVIDs are signed only for an [`authorized::AuthorizedEntry`], which only that grant
//! yields.

use std::collections::HashMap;
use std::sync::Arc;

use spire_proto::refusal::{self, Reason};
use spire_proto::server as pb;
use spire_proto::server::agent_server::Agent;
use spire_proto::x509pop;
use tonic::{Request, Response, Status};

use crate::api::authz::AgentGrant;
use crate::api::{ca_status, datastore_status};
use crate::ca::{SignedJwtSvid, SignedSvid};
use crate::datastore::{self, AttestedAgent, EntryFilter};
use crate::entries;
use crate::state::ServerState;
use authorized::AuthorizedEntry;

/// Most CSRs one `BatchNewX509SVID` call may carry.
pub const MAX_BATCH: usize = 500;

/// The agent API.
pub struct AgentService {
    state: Arc<ServerState>,
}

impl AgentService {
    pub fn new(state: Arc<ServerState>) -> Self {
        AgentService { state }
    }

    /// The entries `agent` may have SVIDs for: those it is authorised for, not expired.
    async fn authorized_entries(&self, agent: &AgentGrant) -> Result<Vec<AuthorizedEntry>, Status> {
        let all = self
            .state
            .datastore
            .list_entries(&EntryFilter::default())
            .await
            .map_err(datastore_status)?;
        let now = self.state.clock.unix_seconds();
        Ok(AuthorizedEntry::for_agent(agent, &all, now))
    }
}

/// The wire form of a signed JWT-SVID.
pub(crate) fn jwt_svid_to_proto(svid: SignedJwtSvid) -> pb::JwtSvid {
    pb::JwtSvid {
        token: svid.token,
        spiffe_id: svid.spiffe_id.to_string(),
        issued_at: svid.issued_at,
        expires_at: svid.expires_at,
    }
}

fn svid_to_proto(svid: &SignedSvid) -> pb::X509Svid {
    pb::X509Svid {
        spiffe_id: svid.spiffe_id.to_string(),
        cert_chain: svid.cert_chain.clone(),
        expires_at: svid.expires_at,
    }
}

impl AgentService {
    /// Node attestation by join token or x509pop (counted by [`Agent::attest_agent`]).
    async fn attest(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<Response<pb::AttestAgentResponse>, Status> {
        let req = request.into_inner();
        let (agent_id, selectors, token) = match req.attestation_type.as_str() {
            "join_token" => {
                let token = String::from_utf8(req.payload)
                    .map_err(|_| Status::invalid_argument("join token is not UTF-8"))?;
                let agent_id = self
                    .state
                    .join_token_agent_id(&token)
                    .map_err(Status::invalid_argument)?;
                (agent_id, vec![], Some(token))
            }
            x509pop::ATTESTATION_TYPE => {
                let (agent_id, selectors) = self.x509pop()?.complete(&req.payload)?;
                (agent_id, selectors, None)
            }
            other => return Err(unsupported(other)),
        };
        if let Some(existing) = self
            .state
            .datastore
            .get_attested_agent(&agent_id.to_string())
            .await
            .map_err(datastore_status)?
            && existing.banned
        {
            return Err(refusal::permission_denied(
                Reason::AgentBanned,
                format!("failed to attest: agent \"{agent_id}\" is banned"),
            ));
        }
        // Sign first: a malformed CSR must not burn the single-use token.
        let svid = self
            .state
            .ca()
            .sign_csr(&req.csr, &agent_id, self.state.config.agent_ttl, &[])
            .map_err(ca_status)?;
        if let Some(token) = &token {
            let stored = self
                .state
                .datastore
                .consume_join_token(token)
                .await
                .map_err(datastore_status)?
                .ok_or_else(|| {
                    Status::invalid_argument("join token does not exist or has already been used")
                })?;
            if stored.expires_at <= self.state.clock.unix_seconds() {
                return Err(Status::invalid_argument("join token expired"));
            }
        }
        let reattestable = token.is_none();
        let agent = AttestedAgent {
            spiffe_id: agent_id.to_string(),
            attestation_type: req.attestation_type.clone(),
            serial_number: svid.serial_number.clone(),
            expires_at: svid.expires_at,
            // A new attestation starts afresh: the SVID issued here is the only one accepted.
            new_serial_number: String::new(),
            new_expires_at: 0,
            selectors,
            can_reattest: reattestable,
            banned: false,
        };
        self.state
            .datastore
            .upsert_attested_agent(&agent)
            .await
            .map_err(datastore_status)?;
        tracing::info!(agent = %agent_id, attestation_type = %req.attestation_type, "agent attested");
        let bundle = self.state.bundle().await.map_err(datastore_status)?;
        Ok(Response::new(pb::AttestAgentResponse {
            svid: Some(svid_to_proto(&svid)),
            reattestable,
            bundle: Some(bundle),
        }))
    }

    /// The x509pop attestor, if the server is configured for it.
    fn x509pop(&self) -> Result<&crate::x509pop::X509PopAttestor, Status> {
        self.state.x509pop.as_ref().ok_or_else(|| {
            Status::invalid_argument(
                "x509pop attestation is not enabled on this server (set \
                 [server.node_attestor.x509pop] ca_bundle_path)",
            )
        })
    }

    /// Agent SVID renewal (counted by [`Agent::renew_agent`]).
    async fn renew(
        &self,
        grant: &AgentGrant,
        req: pb::RenewAgentRequest,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let agent = grant.agent();
        let svid = self
            .state
            .ca()
            .sign_csr(&req.csr, agent, self.state.config.agent_ttl, &[])
            .map_err(ca_status)?;
        // Pending until the agent calls with it: the current SVID keeps working meanwhile, in
        // case this answer never reaches the agent.
        self.state
            .datastore
            .set_agent_new_svid(&agent.to_string(), &svid.serial_number, svid.expires_at)
            .await
            .map_err(datastore_status)?;
        tracing::debug!(%agent, "agent SVID renewed");
        Ok(Response::new(pb::RenewAgentResponse {
            svid: Some(svid_to_proto(&svid)),
        }))
    }
}

fn unsupported(kind: &str) -> Status {
    Status::invalid_argument(format!(
        "unsupported attestation type {kind:?}; this server supports \"join_token\" and \"x509pop\""
    ))
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn attest_challenge(
        &self,
        request: Request<pb::AttestChallengeRequest>,
    ) -> Result<Response<pb::AttestChallengeResponse>, Status> {
        let req = request.into_inner();
        if req.attestation_type != x509pop::ATTESTATION_TYPE {
            return Err(unsupported(&req.attestation_type));
        }
        let (challenge_id, challenge) = self
            .x509pop()?
            .challenge(&self.state.config.trust_domain, &req.payload)?;
        Ok(Response::new(pb::AttestChallengeResponse {
            challenge_id,
            challenge,
        }))
    }

    async fn attest_agent(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<Response<pb::AttestAgentResponse>, Status> {
        let outcome = self.attest(request).await;
        self.state.metrics.attestation(outcome.is_ok());
        if outcome.is_ok() {
            self.state.metrics.signed("x509", "agent", 1);
        }
        outcome
    }

    async fn renew_agent(
        &self,
        request: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let grant = AgentGrant::of(&request)?;
        let renewed = self.renew(&grant, request.into_inner()).await;
        if renewed.is_ok() {
            self.state.metrics.signed("x509", "agent", 1);
        }
        renewed
    }
    async fn sync_authorized_entries(
        &self,
        request: Request<pb::SyncAuthorizedEntriesRequest>,
    ) -> Result<Response<pb::SyncAuthorizedEntriesResponse>, Status> {
        let agent = AgentGrant::of(&request)?;
        let entries: Vec<datastore::Entry> = self
            .authorized_entries(&agent)
            .await?
            .into_iter()
            .map(AuthorizedEntry::into_entry)
            .collect();
        let bundle = self.state.bundle().await.map_err(datastore_status)?;
        let federated_bundles = crate::federation::bundles_for(&self.state, &entries)
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::SyncAuthorizedEntriesResponse {
            entries: entries.iter().map(entries::to_proto).collect(),
            bundle: Some(bundle),
            federated_bundles,
        }))
    }

    async fn batch_new_x509svid(
        &self,
        request: Request<pb::BatchNewX509SvidRequest>,
    ) -> Result<Response<pb::BatchNewX509SvidResponse>, Status> {
        let agent = AgentGrant::of(&request)?;
        let params = request.into_inner().params;
        if params.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} CSRs per call, got {}",
                params.len()
            )));
        }
        let authorized: HashMap<String, AuthorizedEntry> = self
            .authorized_entries(&agent)
            .await?
            .into_iter()
            .map(|e| (e.entry().id.clone(), e))
            .collect();
        let default_ttl = self.state.config.default_x509_svid_ttl;
        let mut results = Vec::with_capacity(params.len());
        for param in params {
            let result = match authorized.get(&param.entry_id) {
                None => Err(format!(
                    "entry {:?} is not authorized for this agent",
                    param.entry_id
                )),
                Some(entry) => entry.sign_x509(&self.state, &param.csr, default_ttl),
            };
            results.push(match result {
                Ok(svid) => pb::X509SvidResult {
                    entry_id: param.entry_id,
                    svid: Some(svid_to_proto(&svid)),
                    error: String::new(),
                },
                Err(error) => pb::X509SvidResult {
                    entry_id: param.entry_id,
                    svid: None,
                    error,
                },
            });
        }
        let signed = results.iter().filter(|r| r.svid.is_some()).count();
        self.state.metrics.signed(
            "x509",
            "workload",
            u64::try_from(signed).unwrap_or(u64::MAX),
        );
        Ok(Response::new(pb::BatchNewX509SvidResponse { results }))
    }

    async fn new_jwtsvid(
        &self,
        request: Request<pb::NewJwtSvidRequest>,
    ) -> Result<Response<pb::NewJwtSvidResponse>, Status> {
        let agent = AgentGrant::of(&request)?;
        let req = request.into_inner();
        spire_proto::jwt_svid::check_audience(&req.audience)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The same rule as for X.509: only entries this agent is authorised for.
        let entry = self
            .authorized_entries(&agent)
            .await?
            .into_iter()
            .find(|e| e.entry().id == req.entry_id)
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "entry {:?} is not authorized for this agent",
                    req.entry_id
                ))
            })?;
        let svid = entry.sign_jwt(&self.state, &req.audience)?;
        self.state.metrics.signed("jwt", "workload", 1);
        tracing::debug!(agent = %agent.agent(), spiffe_id = %svid.spiffe_id, "JWT-SVID signed");
        Ok(Response::new(pb::NewJwtSvidResponse {
            svid: Some(jwt_svid_to_proto(svid)),
        }))
    }
}

mod authorized;
#[cfg(test)]
mod tests;
