//! Policies: who may do what. Creating, reading and deleting them here ([`Policies`],
//! reached through [`Nexus::policies`], each operation taking the [`Grant`] for its
//! permission on `spike/system/acl`); the compiled cache that judges requests in [`access`];
//! keeping that cache current, on this replica and across replicas, in [`sync`].

pub mod access;
mod name;
pub mod sync;

use nexus_api::model::{ListPoliciesRequest, PolicyResponse, PutPolicyRequest};
use policies::{Permission, SYSTEM_ACL_PATH};
use time::OffsetDateTime;

pub use name::{NewPolicy, PolicyName};

use self::access::Change;
use crate::authz::Grant;
use crate::error::ServiceError;
use crate::keys::sealing;
use crate::service::Nexus;
use crate::store::Missing;

/// The policy operations of one Nexus.
#[derive(Debug, Clone, Copy)]
pub struct Policies<'a> {
    nexus: &'a Nexus,
}

impl<'a> Policies<'a> {
    /// The policy operations of `nexus`.
    pub(crate) fn new(nexus: &'a Nexus) -> Self {
        Policies { nexus }
    }
}

impl Policies<'_> {
    /// Creates or replaces a policy; the access cache is current when this returns.
    pub async fn put(&self, grant: &Grant, policy: &NewPolicy) -> Result<(), ServiceError> {
        grant.for_path(Permission::Write, SYSTEM_ACL_PATH)?;
        let nexus = self.nexus;
        let _one = nexus.access.write_lock().await;
        let permit = nexus.keys.write().await.map_err(ServiceError::NotReady)?;
        let root = permit.root().clone();
        let sealed = sealing::seal_policy(&root, policy.request())?;
        let generation = nexus
            .store
            .put_policy(
                policy.name().as_str(),
                sealed,
                nexus.clock.now(),
                permit.fence(),
            )
            .await
            .map_err(|e| nexus.write_failed(e))?;
        drop(permit);
        let change = Change::Put(policy.compiled().clone());
        self.changed(&root, generation, change).await
    }

    /// Deletes a policy; the access cache is current when this returns.
    pub async fn delete(&self, grant: &Grant, name: &PolicyName) -> Result<(), ServiceError> {
        grant.for_path(Permission::Write, SYSTEM_ACL_PATH)?;
        let root = self.nexus.root()?;
        let _one = self.nexus.access.write_lock().await;
        let generation = self
            .nexus
            .store
            .delete_policy(name.as_str())
            .await?
            .ok_or_else(|| not_found(name.as_str()))?;
        let change = Change::Delete(name.as_str().to_owned());
        self.changed(&root, generation, change).await
    }

    /// A policy by name.
    pub async fn get(
        &self,
        grant: &Grant,
        name: &PolicyName,
    ) -> Result<PolicyResponse, ServiceError> {
        grant.for_path(Permission::Read, SYSTEM_ACL_PATH)?;
        let nexus = self.nexus;
        let root = nexus.root()?;
        let stored = nexus
            .store
            .get_policy(name.as_str())
            .await?
            .ok_or_else(|| not_found(name.as_str()))?;
        let policy = nexus.open(&root, |key| {
            sealing::open_policy(key, &stored.name, &stored.sealed)
        })?;
        Ok(policy_response(
            policy,
            stored.created_at,
            stored.updated_at,
        ))
    }

    /// Policies, optionally only those with exactly the given patterns.
    pub async fn list(
        &self,
        grant: &Grant,
        filter: &ListPoliciesRequest,
    ) -> Result<Vec<PolicyResponse>, ServiceError> {
        grant.for_path(Permission::List, SYSTEM_ACL_PATH)?;
        let nexus = self.nexus;
        let root = nexus.root()?;
        let mut out = Vec::new();
        for stored in nexus.store.list_policies().await? {
            let policy = nexus.open(&root, |key| {
                sealing::open_policy(key, &stored.name, &stored.sealed)
            })?;
            let keep = filter
                .spiffe_id_pattern
                .as_ref()
                .is_none_or(|p| *p == policy.spiffe_id_pattern)
                && filter
                    .path_pattern
                    .as_ref()
                    .is_none_or(|p| *p == policy.path_pattern);
            if keep {
                out.push(policy_response(
                    policy,
                    stored.created_at,
                    stored.updated_at,
                ));
            }
        }
        Ok(out)
    }
}

/// A policy that does not exist.
pub fn not_found(name: &str) -> ServiceError {
    ServiceError::NotFound(Missing::Policy(name.to_owned()))
}

fn policy_response(
    policy: PutPolicyRequest,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> PolicyResponse {
    PolicyResponse {
        id: policy.name.clone(),
        name: policy.name,
        spiffe_id_pattern: policy.spiffe_id_pattern,
        path_pattern: policy.path_pattern,
        permissions: policy.permissions,
        created_at,
        updated_at,
    }
}
