//! Federation relationships at run time (SPIRE's TrustDomain API behind `spire-server
//! federation create|list|show|update|delete|refresh`): checked as the config file's are,
//! stored in the datastore, and picked up by [`super::run_relationships`] within seconds.
//! Relationships from the config file are listed too but cannot be changed here.

use spire_proto::server as pb;
use tonic::Status;

use super::{checked_bundle, foreign_trust_domain};
use crate::api::authz::AdminGrant;
use crate::api::datastore_status;
use crate::config::{EndpointProfile, FederationRelationship};
use crate::datastore::{DatastoreError, Relationship};
use crate::state::ServerState;

/// A stored relationship, checked again (the config may have changed since it was stored).
pub(crate) fn from_stored(
    state: &ServerState,
    stored: &Relationship,
) -> Result<FederationRelationship, String> {
    FederationRelationship::parse(
        &state.config.trust_domain,
        &stored.trust_domain,
        &stored.bundle_endpoint_url,
        &stored.bundle_endpoint_profile,
        Some(&stored.endpoint_spiffe_id),
    )
}

fn to_proto(rel: &FederationRelationship) -> pb::FederationRelationship {
    pb::FederationRelationship {
        trust_domain: rel.trust_domain.to_string(),
        bundle_endpoint_url: rel.url.clone(),
        bundle_endpoint_profile: rel.profile.name().to_owned(),
        endpoint_spiffe_id: match &rel.profile {
            EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => endpoint_spiffe_id.to_string(),
            EndpointProfile::HttpsWeb => String::new(),
        },
        trust_domain_bundle: None,
    }
}

/// Checks a relationship from the CLI and refuses one the config file already defines.
fn checked(
    state: &ServerState,
    req: &pb::FederationRelationship,
) -> Result<(FederationRelationship, Relationship), Status> {
    let td = foreign_trust_domain(state, &req.trust_domain)?;
    if state
        .config
        .federates_with
        .iter()
        .any(|r| r.trust_domain == td)
    {
        return Err(Status::failed_precondition(format!(
            "the relationship with {td} is in the config file; change it there"
        )));
    }
    let rel = FederationRelationship::parse(
        &state.config.trust_domain,
        td.as_str(),
        &req.bundle_endpoint_url,
        &req.bundle_endpoint_profile,
        Some(&req.endpoint_spiffe_id),
    )
    .map_err(|e| Status::invalid_argument(format!("{td}: {e}")))?;
    let stored = Relationship {
        trust_domain: td.to_string(),
        bundle_endpoint_url: rel.url.clone(),
        bundle_endpoint_profile: rel.profile.name().to_owned(),
        endpoint_spiffe_id: to_proto(&rel).endpoint_spiffe_id,
    };
    Ok((rel, stored))
}

/// The bundle given with a relationship, the one its `https_spiffe` endpoint is first
/// verified with; checked before anything is stored, and stored with the relationship.
fn bootstrap_bundle(
    rel: &FederationRelationship,
    bundle: Option<pb::Bundle>,
) -> Result<Option<crate::datastore::Bundle>, Status> {
    bundle
        .map(|b| checked_bundle(&rel.trust_domain, b))
        .transpose()
}

/// Stores a new relationship, with the bundle to first verify its endpoint with.
pub async fn create(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::FederationRelationship,
) -> Result<pb::FederationRelationship, Status> {
    let (rel, stored) = checked(state, &req)?;
    let bundle = bootstrap_bundle(&rel, req.trust_domain_bundle)?;
    state
        .datastore
        .create_relationship(&stored, bundle.as_ref())
        .await
        .map_err(|e| match e {
            DatastoreError::AlreadyExists(_) => Status::already_exists(format!(
                "a federation relationship with {} exists; change it with `federation update`",
                rel.trust_domain
            )),
            e => datastore_status(e),
        })?;
    tracing::info!(trust_domain = %rel.trust_domain, profile = rel.profile.name(), "federation relationship created");
    Ok(to_proto(&rel))
}

/// Replaces a stored relationship.
pub async fn update(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::FederationRelationship,
) -> Result<pb::FederationRelationship, Status> {
    let (rel, stored) = checked(state, &req)?;
    let bundle = bootstrap_bundle(&rel, req.trust_domain_bundle)?;
    state
        .datastore
        .update_relationship(&stored, bundle.as_ref())
        .await
        .map_err(|e| match e {
            DatastoreError::NotFound(_) => Status::not_found(format!(
                "no federation relationship with {}; create it with `federation create`",
                rel.trust_domain
            )),
            e => datastore_status(e),
        })?;
    tracing::info!(trust_domain = %rel.trust_domain, "federation relationship updated");
    Ok(to_proto(&rel))
}

/// Forgets a stored relationship (its bundle stays until deleted on its own).
pub async fn delete(
    state: &ServerState,
    _admin: &AdminGrant,
    trust_domain: &str,
) -> Result<(), Status> {
    let td = foreign_trust_domain(state, trust_domain)?;
    if state
        .config
        .federates_with
        .iter()
        .any(|r| r.trust_domain == td)
    {
        return Err(Status::failed_precondition(format!(
            "the relationship with {td} is in the config file; remove it there"
        )));
    }
    if !state
        .datastore
        .delete_relationship(td.as_str())
        .await
        .map_err(datastore_status)?
    {
        return Err(Status::not_found(format!(
            "no federation relationship with {td}"
        )));
    }
    tracing::info!(trust_domain = %td, "federation relationship deleted");
    Ok(())
}

/// Every relationship, from the config file and stored, by trust domain.
pub async fn list(
    state: &ServerState,
    _admin: &AdminGrant,
) -> Result<Vec<pb::FederationRelationship>, Status> {
    let mut all: Vec<_> = super::relationships(state)
        .await
        .map_err(datastore_status)?
        .iter()
        .map(to_proto)
        .collect();
    all.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
    Ok(all)
}

/// Fetches the relationship's bundle now and returns it as stored.
pub async fn refresh(
    state: &ServerState,
    _admin: &AdminGrant,
    trust_domain: &str,
) -> Result<pb::Bundle, Status> {
    let td = foreign_trust_domain(state, trust_domain)?;
    let rel = super::relationships(state)
        .await
        .map_err(datastore_status)?
        .into_iter()
        .find(|r| r.trust_domain == td)
        .ok_or_else(|| Status::not_found(format!("no federation relationship with {td}")))?;
    super::fetch_once(state, &rel)
        .await
        .map_err(|e| Status::unavailable(format!("refreshing the bundle of {td}: {e}")))?;
    let bundle = state
        .datastore
        .get_bundle(td.as_str())
        .await
        .map_err(datastore_status)?
        .ok_or_else(|| Status::internal("the refreshed bundle is not stored"))?;
    Ok(crate::state::bundle_to_proto(&bundle))
}
