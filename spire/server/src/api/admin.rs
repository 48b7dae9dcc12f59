//! The `Admin` service behind the `spire-server` CLI. Served only on the local Unix socket,
//! whose file permissions (0700 directory, 0600 socket) decide who may call it.

use std::sync::Arc;
use std::time::Duration;

use spiffe::SpiffeId;
use spire_proto::server as pb;
use spire_proto::server::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::api::agent::jwt_svid_to_proto;
use crate::api::{ca_status, datastore_status};
use crate::datastore::{self, EntryFilter, JoinToken};
use crate::federation::admin as federation_admin;
use crate::state::{ServerState, bundle_to_proto, now};
use crate::{entries, federation};

/// Default join token lifetime, as SPIRE's.
pub const DEFAULT_TOKEN_TTL: i32 = 600;
/// Longest SVID `x509 mint` or `jwt mint` will issue.
pub const MAX_MINT_TTL: i32 = 7 * 24 * 3600;

/// The admin API.
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    pub fn new(state: Arc<ServerState>) -> Self {
        AdminService { state }
    }
}

fn agent_to_proto(a: &datastore::AttestedAgent) -> pb::AttestedAgent {
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

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_entry(
        &self,
        request: Request<pb::Entry>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = request.into_inner();
        let id = if entry.id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            entries::validate_entry_id(&entry.id).map_err(Status::invalid_argument)?;
            entry.id.clone()
        };
        let entry = entries::validate(&entry, id, &self.state.config.trust_domain)
            .map_err(Status::invalid_argument)?;
        let created = self
            .state
            .datastore
            .create_entry(&entry)
            .await
            .map_err(datastore_status)?;
        tracing::info!(entry_id = %created.id, spiffe_id = %created.spiffe_id, "entry created");
        Ok(Response::new(entries::to_proto(&created)))
    }

    async fn update_entry(
        &self,
        request: Request<pb::Entry>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = request.into_inner();
        if entry.id.is_empty() {
            return Err(Status::invalid_argument(
                "entryID is required to update an entry",
            ));
        }
        let entry = entries::validate(&entry, entry.id.clone(), &self.state.config.trust_domain)
            .map_err(Status::invalid_argument)?;
        let updated = self
            .state
            .datastore
            .update_entry(&entry)
            .await
            .map_err(datastore_status)?;
        tracing::info!(entry_id = %updated.id, "entry updated");
        Ok(Response::new(entries::to_proto(&updated)))
    }

    async fn delete_entry(
        &self,
        request: Request<pb::EntryIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let id = request.into_inner().id;
        if id.is_empty() {
            return Err(Status::invalid_argument("entryID is required"));
        }
        self.state
            .datastore
            .delete_entry(&id)
            .await
            .map_err(datastore_status)?;
        tracing::info!(entry_id = %id, "entry deleted");
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_entry(
        &self,
        request: Request<pb::EntryIdRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let id = request.into_inner().id;
        match self
            .state
            .datastore
            .get_entry(&id)
            .await
            .map_err(datastore_status)?
        {
            Some(entry) => Ok(Response::new(entries::to_proto(&entry))),
            None => Err(Status::not_found(format!("no entry with ID {id:?}"))),
        }
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let req = request.into_inner();
        let td = &self.state.config.trust_domain;
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let spiffe_id = non_empty(req.spiffe_id)
            .map(|s| entries::parse_id("spiffeID", &s, td).map(|id| id.to_string()))
            .transpose()
            .map_err(Status::invalid_argument)?;
        let parent_id = non_empty(req.parent_id)
            .map(|s| entries::parse_id("parentID", &s, td).map(|id| id.to_string()))
            .transpose()
            .map_err(Status::invalid_argument)?;
        let mut selectors = Vec::new();
        for s in req.selectors {
            s.validate()
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            selectors.push(datastore::Selector {
                kind: s.r#type,
                value: s.value,
            });
        }
        let filter = EntryFilter {
            spiffe_id,
            parent_id,
            selectors,
        };
        let found = self
            .state
            .datastore
            .list_entries(&filter)
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::ListEntriesResponse {
            entries: found.iter().map(entries::to_proto).collect(),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let req = request.into_inner();
        let ttl = if req.ttl == 0 {
            DEFAULT_TOKEN_TTL
        } else {
            req.ttl
        };
        if !(1..=entries::MAX_TTL_SECS).contains(&ttl) {
            return Err(Status::invalid_argument(format!(
                "ttl must be between 1 and {} seconds",
                entries::MAX_TTL_SECS
            )));
        }
        let alias = if req.alias_spiffe_id.is_empty() {
            None
        } else {
            let id = entries::parse_id(
                "spiffeID",
                &req.alias_spiffe_id,
                &self.state.config.trust_domain,
            )
            .map_err(Status::invalid_argument)?;
            Some(id)
        };
        let token = uuid::Uuid::new_v4().to_string();
        let agent_id = self
            .state
            .join_token_agent_id(&token)
            .map_err(Status::internal)?;
        let join_token = JoinToken {
            token: token.clone(),
            expires_at: now() + i64::from(ttl),
        };
        match alias {
            Some(alias) => {
                let entry = pb::Entry {
                    spiffe_id: alias.to_string(),
                    parent_id: agent_id.to_string(),
                    selectors: vec![pb::Selector {
                        r#type: "spiffe_id".into(),
                        value: agent_id.to_string(),
                    }],
                    ..Default::default()
                };
                let entry = entries::validate(
                    &entry,
                    uuid::Uuid::new_v4().to_string(),
                    &self.state.config.trust_domain,
                )
                .map_err(Status::invalid_argument)?;
                self.state
                    .datastore
                    .create_join_token_with_alias(&join_token, &entry)
                    .await
                    .map_err(datastore_status)?;
            }
            None => self
                .state
                .datastore
                .create_join_token(&join_token)
                .await
                .map_err(datastore_status)?,
        }
        Ok(Response::new(pb::JoinToken {
            token,
            expires_at: join_token.expires_at,
        }))
    }

    async fn get_bundle(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::Bundle>, Status> {
        Ok(Response::new(
            self.state.bundle().await.map_err(datastore_status)?,
        ))
    }

    async fn set_federated_bundle(
        &self,
        request: Request<pb::Bundle>,
    ) -> Result<Response<pb::Bundle>, Status> {
        let bundle = request.into_inner();
        let td = federation::foreign_trust_domain(&self.state, &bundle.trust_domain)?;
        let checked = federation::checked_bundle(&td, bundle)?;
        let stored = self
            .state
            .datastore
            .set_bundle(&checked)
            .await
            .map_err(datastore_status)?;
        tracing::info!(trust_domain = %td, sequence = stored.sequence_number, "federated bundle set");
        Ok(Response::new(bundle_to_proto(&stored)))
    }

    async fn list_federated_bundles(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListBundlesResponse>, Status> {
        let bundles = federation::list(&self.state)
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::ListBundlesResponse {
            bundles: bundles.iter().map(bundle_to_proto).collect(),
        }))
    }

    async fn delete_federated_bundle(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let td = federation::foreign_trust_domain(&self.state, &request.get_ref().trust_domain)?;
        let deleted = self
            .state
            .datastore
            .delete_bundle(td.as_str())
            .await
            .map_err(datastore_status)?;
        if !deleted {
            return Err(Status::not_found(format!("no bundle is stored for {td}")));
        }
        tracing::info!(trust_domain = %td, "federated bundle deleted");
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_agents(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let agents = self
            .state
            .datastore
            .list_attested_agents()
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(agent_to_proto).collect(),
        }))
    }

    async fn evict_agent(
        &self,
        request: Request<pb::AgentIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let raw = request.into_inner().spiffe_id;
        let id = entries::parse_id("spiffeID", &raw, &self.state.config.trust_domain)
            .map_err(Status::invalid_argument)?;
        if !self
            .state
            .datastore
            .delete_attested_agent(&id.to_string())
            .await
            .map_err(datastore_status)?
        {
            return Err(Status::not_found(format!("no attested agent {id}")));
        }
        tracing::info!(agent = %id, "agent evicted");
        Ok(Response::new(pb::Empty {}))
    }

    async fn ban_agent(
        &self,
        request: Request<pb::AgentIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let raw = request.into_inner().spiffe_id;
        let id = entries::parse_id("spiffeID", &raw, &self.state.config.trust_domain)
            .map_err(Status::invalid_argument)?;
        if !id.path().starts_with("/spire/agent/") {
            return Err(Status::invalid_argument(format!(
                "{id} is not an agent ID (spiffe://<td>/spire/agent/...)"
            )));
        }
        if !self
            .state
            .datastore
            .ban_attested_agent(&id.to_string())
            .await
            .map_err(datastore_status)?
        {
            return Err(Status::not_found(format!("no attested agent {id}")));
        }
        tracing::warn!(agent = %id, "agent banned");
        Ok(Response::new(pb::Empty {}))
    }

    async fn count_agents(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let count = self
            .state
            .datastore
            .count_attested_agents()
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    async fn count_entries(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let count = self
            .state
            .datastore
            .count_entries()
            .await
            .map_err(datastore_status)?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    async fn purge_agents(
        &self,
        request: Request<pb::PurgeAgentsRequest>,
    ) -> Result<Response<pb::PurgeAgentsResponse>, Status> {
        let req = request.into_inner();
        if req.expired_before > now() {
            return Err(Status::invalid_argument(
                "expired_before is in the future; -expiredFor must not be negative",
            ));
        }
        let purged = self
            .state
            .datastore
            .purge_expired_agents(req.expired_before, req.dry_run)
            .await
            .map_err(datastore_status)?;
        if !req.dry_run {
            for agent in &purged {
                tracing::info!(agent = %agent.spiffe_id, "expired agent purged");
            }
        }
        Ok(Response::new(pb::PurgeAgentsResponse {
            agents: purged.iter().map(agent_to_proto).collect(),
        }))
    }

    async fn create_federation_relationship(
        &self,
        request: Request<pb::FederationRelationship>,
    ) -> Result<Response<pb::FederationRelationship>, Status> {
        federation_admin::create(&self.state, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_federation_relationship(
        &self,
        request: Request<pb::FederationRelationship>,
    ) -> Result<Response<pb::FederationRelationship>, Status> {
        federation_admin::update(&self.state, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_federation_relationship(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        federation_admin::delete(&self.state, &request.into_inner().trust_domain).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_federation_relationships(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListFederationRelationshipsResponse>, Status> {
        Ok(Response::new(pb::ListFederationRelationshipsResponse {
            relationships: federation_admin::list(&self.state).await?,
        }))
    }

    async fn refresh_bundle(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Bundle>, Status> {
        federation_admin::refresh(&self.state, &request.into_inner().trust_domain)
            .await
            .map(Response::new)
    }

    async fn mint_x509_svid(
        &self,
        request: Request<pb::MintX509SvidRequest>,
    ) -> Result<Response<pb::MintX509SvidResponse>, Status> {
        let req = request.into_inner();
        let id: SpiffeId =
            entries::parse_workload_id("spiffeID", &req.spiffe_id, &self.state.config.trust_domain)
                .map_err(Status::invalid_argument)?;
        let ttl = if req.ttl == 0 {
            self.state.config.default_x509_svid_ttl
        } else if (1..=MAX_MINT_TTL).contains(&req.ttl) {
            Duration::from_secs(req.ttl.unsigned_abs().into())
        } else {
            return Err(Status::invalid_argument(format!(
                "ttl must be between 1 and {MAX_MINT_TTL} seconds"
            )));
        };
        let minted = self
            .state
            .ca()
            .mint(&id, ttl, &req.dns_names)
            .map_err(ca_status)?;
        let bundle = self.state.bundle().await.map_err(datastore_status)?;
        self.state.metrics.signed("x509", "mint", 1);
        Ok(Response::new(pb::MintX509SvidResponse {
            svid: Some(pb::X509Svid {
                spiffe_id: minted.svid.spiffe_id.to_string(),
                cert_chain: minted.svid.cert_chain.clone(),
                expires_at: minted.svid.expires_at,
            }),
            private_key: minted.private_key_pkcs8.to_vec(),
            bundle: Some(bundle),
        }))
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<pb::MintJwtSvidRequest>,
    ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
        let req = request.into_inner();
        let id: SpiffeId =
            entries::parse_workload_id("spiffeID", &req.spiffe_id, &self.state.config.trust_domain)
                .map_err(Status::invalid_argument)?;
        let ttl = if req.ttl == 0 {
            self.state.config.default_jwt_svid_ttl
        } else if (1..=MAX_MINT_TTL).contains(&req.ttl) {
            Duration::from_secs(req.ttl.unsigned_abs().into())
        } else {
            return Err(Status::invalid_argument(format!(
                "ttl must be between 1 and {MAX_MINT_TTL} seconds"
            )));
        };
        let svid = self
            .state
            .jwt()
            .sign_as(
                &id,
                &req.audience,
                ttl,
                self.state.config.jwt_issuer.as_deref(),
            )
            .map_err(ca_status)?;
        tracing::info!(spiffe_id = %id, "JWT-SVID minted");
        self.state.metrics.signed("jwt", "mint", 1);
        Ok(Response::new(pb::MintJwtSvidResponse {
            svid: Some(jwt_svid_to_proto(svid)),
        }))
    }
}
