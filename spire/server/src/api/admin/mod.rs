//! The `Admin` service behind the `spire-server` CLI. Served only on the local Unix socket,
//! whose file permissions (0700 directory, 0600 socket) decide who may call it; the
//! authoriser ([`crate::api::authz`]) checks that a call came that way and hands each
//! handler an [`AdminGrant`], which every function here takes.
//!
//! One module per thing the CLI manages: [`entries`], [`agents`] (and the join tokens they
//! attest with, [`tokens`]), [`bundles`], [`mint`]; federation relationships are in
//! [`crate::federation::admin`].

mod agents;
mod bundles;
mod entries;
mod mint;
mod tokens;

use std::sync::Arc;

use spire_proto::server as pb;
use spire_proto::server::admin_server::Admin;
use tonic::{Request, Response, Status};

use crate::api::authz::AdminGrant;
use crate::federation::admin as federation;
use crate::state::ServerState;

pub use mint::MAX_MINT_TTL;
pub use tokens::DEFAULT_TOKEN_TTL;

/// The admin API.
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    pub fn new(state: Arc<ServerState>) -> Self {
        AdminService { state }
    }
}

/// The grant the authoriser left on `request`, and the request's message.
fn granted<T>(request: Request<T>) -> Result<(AdminGrant, T), Status> {
    let grant = AdminGrant::of(&request)?;
    Ok((grant, request.into_inner()))
}

/// Each method: the caller's grant, then the function that does the work.
#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_entry(
        &self,
        request: Request<pb::Entry>,
    ) -> Result<Response<pb::Entry>, Status> {
        let (grant, entry) = granted(request)?;
        entries::create(&self.state, &grant, entry)
            .await
            .map(Response::new)
    }

    async fn update_entry(
        &self,
        request: Request<pb::Entry>,
    ) -> Result<Response<pb::Entry>, Status> {
        let (grant, entry) = granted(request)?;
        entries::update(&self.state, &grant, entry)
            .await
            .map(Response::new)
    }

    async fn delete_entry(
        &self,
        request: Request<pb::EntryIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (grant, req) = granted(request)?;
        entries::delete(&self.state, &grant, &req.id)
            .await
            .map(Response::new)
    }

    async fn get_entry(
        &self,
        request: Request<pb::EntryIdRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let (grant, req) = granted(request)?;
        entries::get(&self.state, &grant, &req.id)
            .await
            .map(Response::new)
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let (grant, req) = granted(request)?;
        entries::list(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let (grant, req) = granted(request)?;
        tokens::create(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn get_bundle(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::Bundle>, Status> {
        let (grant, _) = granted(request)?;
        bundles::get(&self.state, &grant).await.map(Response::new)
    }

    async fn set_federated_bundle(
        &self,
        request: Request<pb::Bundle>,
    ) -> Result<Response<pb::Bundle>, Status> {
        let (grant, bundle) = granted(request)?;
        bundles::set_federated(&self.state, &grant, bundle)
            .await
            .map(Response::new)
    }

    async fn list_federated_bundles(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListBundlesResponse>, Status> {
        let (grant, _) = granted(request)?;
        bundles::list_federated(&self.state, &grant)
            .await
            .map(Response::new)
    }

    async fn delete_federated_bundle(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (grant, req) = granted(request)?;
        bundles::delete_federated(&self.state, &grant, &req.trust_domain)
            .await
            .map(Response::new)
    }

    async fn list_agents(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let (grant, _) = granted(request)?;
        agents::list(&self.state, &grant).await.map(Response::new)
    }

    async fn evict_agent(
        &self,
        request: Request<pb::AgentIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (grant, req) = granted(request)?;
        agents::evict(&self.state, &grant, &req.spiffe_id)
            .await
            .map(Response::new)
    }

    async fn ban_agent(
        &self,
        request: Request<pb::AgentIdRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (grant, req) = granted(request)?;
        agents::ban(&self.state, &grant, &req.spiffe_id)
            .await
            .map(Response::new)
    }

    async fn count_agents(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let (grant, _) = granted(request)?;
        agents::count(&self.state, &grant).await.map(Response::new)
    }

    async fn count_entries(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let (grant, _) = granted(request)?;
        entries::count(&self.state, &grant).await.map(Response::new)
    }

    async fn purge_agents(
        &self,
        request: Request<pb::PurgeAgentsRequest>,
    ) -> Result<Response<pb::PurgeAgentsResponse>, Status> {
        let (grant, req) = granted(request)?;
        agents::purge(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn create_federation_relationship(
        &self,
        request: Request<pb::FederationRelationship>,
    ) -> Result<Response<pb::FederationRelationship>, Status> {
        let (grant, req) = granted(request)?;
        federation::create(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn update_federation_relationship(
        &self,
        request: Request<pb::FederationRelationship>,
    ) -> Result<Response<pb::FederationRelationship>, Status> {
        let (grant, req) = granted(request)?;
        federation::update(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn delete_federation_relationship(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let (grant, req) = granted(request)?;
        federation::delete(&self.state, &grant, &req.trust_domain).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_federation_relationships(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListFederationRelationshipsResponse>, Status> {
        let (grant, _) = granted(request)?;
        Ok(Response::new(pb::ListFederationRelationshipsResponse {
            relationships: federation::list(&self.state, &grant).await?,
        }))
    }

    async fn refresh_bundle(
        &self,
        request: Request<pb::TrustDomainRequest>,
    ) -> Result<Response<pb::Bundle>, Status> {
        let (grant, req) = granted(request)?;
        federation::refresh(&self.state, &grant, &req.trust_domain)
            .await
            .map(Response::new)
    }

    async fn mint_x509_svid(
        &self,
        request: Request<pb::MintX509SvidRequest>,
    ) -> Result<Response<pb::MintX509SvidResponse>, Status> {
        let (grant, req) = granted(request)?;
        mint::x509(&self.state, &grant, req)
            .await
            .map(Response::new)
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<pb::MintJwtSvidRequest>,
    ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
        let (grant, req) = granted(request)?;
        mint::jwt(&self.state, &grant, req).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use common_net::unix::UnixPeer;
    use tonic::Code;

    use super::*;
    use crate::api::authz;

    fn entry() -> pb::Entry {
        pb::Entry {
            spiffe_id: "spiffe://example.org/app".into(),
            parent_id: "spiffe://example.org/spire/agent/join_token/t1".into(),
            selectors: vec![pb::Selector {
                r#type: "unix".into(),
                value: "uid:1".into(),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_change_is_made_only_with_the_grant_of_the_authoriser() {
        let (state, _dir) = crate::state::for_tests().await;
        let service = AdminService::new(state.clone());

        // Served without the authoriser: refused, nothing written.
        let status = service
            .create_entry(Request::new(entry()))
            .await
            .expect_err("no grant");
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert_eq!(state.datastore.count_entries().await.expect("count"), 0);

        // Through the authoriser, from the admin socket: created.
        let mut request = Request::new(entry());
        request.extensions_mut().insert(UnixPeer {
            pid: None,
            uid: 0,
            gid: 0,
        });
        let path = format!("/{}/CreateEntry", authz::ADMIN);
        authz::authorize(&state, &path, request.extensions_mut())
            .await
            .expect("a local caller may");
        let created = service.create_entry(request).await.expect("created");
        assert_eq!(created.get_ref().spiffe_id, "spiffe://example.org/app");
        assert_eq!(state.datastore.count_entries().await.expect("count"), 1);
    }
}
