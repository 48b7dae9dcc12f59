//! Policies: who may do what. Their CRUD operations here, the compiled cache that judges
//! requests in [`access`], and keeping that cache current across replicas in [`sync`].

pub mod access;
pub mod sync;

use nexus_api::model::{ListPoliciesRequest, PolicyResponse, PutPolicyRequest};
use nexus_crypto::RootKey;
use policies::{Permission, Policy};
use time::OffsetDateTime;

use crate::keys::sealing;
use crate::service::{Nexus, ServiceError};

impl Nexus {
    /// Creates or replaces a policy; the access cache is current when this returns.
    pub async fn put_policy(&self, request: &PutPolicyRequest) -> Result<(), ServiceError> {
        to_policy(request)?
            .validate()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let gate = self.rotation_gate.read().await;
        let root = self.root()?;
        let sealed = sealing::seal_policy(&root, request)?;
        let generation = self
            .store
            .put_policy(&request.name, sealed, OffsetDateTime::now_utc())
            .await
            .map_err(|e| self.write_failed(e))?;
        drop(gate);
        self.policies_changed(&root, generation).await
    }

    /// Deletes a policy; the access cache is current when this returns.
    pub async fn delete_policy(&self, name: &str) -> Result<(), ServiceError> {
        let root = self.root()?;
        let generation = self
            .store
            .delete_policy(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("policy {name:?}")))?;
        self.policies_changed(&root, generation).await
    }

    /// A policy by name.
    pub async fn get_policy(&self, name: &str) -> Result<PolicyResponse, ServiceError> {
        let root = self.root()?;
        let stored = self
            .store
            .get_policy(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("policy {name:?}")))?;
        let policy = self.open(&root, |key| {
            sealing::open_policy(key, &stored.name, &stored.sealed)
        })?;
        Ok(policy_response(
            policy,
            stored.created_at,
            stored.updated_at,
        ))
    }

    /// Policies, optionally only those with exactly the given patterns.
    pub async fn list_policies(
        &self,
        filter: &ListPoliciesRequest,
    ) -> Result<Vec<PolicyResponse>, ServiceError> {
        let root = self.root()?;
        let mut out = Vec::new();
        for stored in self.store.list_policies().await? {
            let policy = self.open(&root, |key| {
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

    /// Decrypts every stored policy and swaps the access cache to them, labelled with the
    /// policy generation they reflect.
    pub async fn load_policies(&self, root: &RootKey) -> Result<(), ServiceError> {
        // The generation is read first: the policies read after it include every change up
        // to it (and maybe later ones), so the label may understate, never overstate, how
        // new the set is. Understating costs one extra reload at the next announcement.
        let generation = self.store.policy_generation().await?;
        let mut loaded = Vec::new();
        for stored in self.store.list_policies().await? {
            let request = self.open(root, |key| {
                sealing::open_policy(key, &stored.name, &stored.sealed)
            })?;
            match to_policy(&request) {
                Ok(policy) => loaded.push(policy),
                Err(error) => {
                    tracing::error!(policy = %stored.name, %error, "stored policy is invalid; ignoring it");
                }
            }
        }
        let count = loaded.len();
        let installed = self.access.install(generation, loaded).map_err(|error| {
            tracing::error!(%error, "stored policies do not compile");
            ServiceError::Internal
        })?;
        if installed {
            tracing::debug!(policies = count, generation, "policy cache rebuilt");
        }
        Ok(())
    }
}

fn to_policy(request: &PutPolicyRequest) -> Result<Policy, ServiceError> {
    let permissions = request
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(Policy::new(
        request.name.clone(),
        request.spiffe_id_pattern.clone(),
        request.path_pattern.clone(),
        permissions,
    ))
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
