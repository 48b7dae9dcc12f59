//! Secrets: versioned maps of strings under a path, sealed on the way into the store and
//! opened on the way out. Authorisation is the caller's ([`crate::api`]); these operations
//! assume it was granted.

use nexus_api::model::{
    GetSecretResponse, MetadataResponse, PutSecretRequest, SecretMetadata, VersionMetadata,
};
use nexus_crypto::RootKey;
use time::OffsetDateTime;

use crate::keys::sealing;
use crate::service::{Nexus, ServiceError};
use crate::store::PutVersion;
use crate::validate;

impl Nexus {
    /// Writes a new version; returns its number.
    pub async fn put_secret(
        &self,
        request: &PutSecretRequest,
        caller: &str,
    ) -> Result<u64, ServiceError> {
        validate::path(&request.path).map_err(ServiceError::Invalid)?;
        validate::values(&request.values).map_err(ServiceError::Invalid)?;
        let _gate = self.rotation_gate.read().await;
        let root = self.root()?;
        let put = PutVersion {
            path: &request.path,
            cas: request.cas,
            max_versions: self.max_versions,
            created_by: caller,
            now: OffsetDateTime::now_utc(),
        };
        let path = request.path.clone();
        let values = &request.values;
        let version = self
            .store
            .put_version(put, move |version| {
                sealing::seal_values(&root, &path, version, values)
            })
            .await
            .map_err(|e| self.write_failed(e))?;
        Ok(version)
    }

    /// Reads a version (0: current).
    pub async fn get_secret(
        &self,
        path: &str,
        version: u64,
    ) -> Result<GetSecretResponse, ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        validate::versions(&[version]).map_err(ServiceError::Invalid)?;
        let root = self.root()?;
        let stored = self.store.get_version(path, version).await?;
        let open = |key: &RootKey| sealing::open_values(key, path, stored.version, &stored.sealed);
        let data = match self.open(&root, open) {
            Ok(data) => data,
            // The key was rotated (here, between reading the key and the record, or by
            // another replica) and this record re-wrapped: open it with the key now current.
            Err(error) => {
                let current = match self.adopt_rotated_key(true).await? {
                    Some(new) => new,
                    None => self.root()?,
                };
                self.open(&current, open).map_err(|_| error)?
            }
        };
        Ok(GetSecretResponse {
            data,
            version: stored.version,
        })
    }

    /// Soft-deletes versions.
    pub async fn delete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .delete_versions(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    /// Restores soft-deleted versions.
    pub async fn undelete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .undelete_versions(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    /// Destroys versions, or the whole secret when none are named.
    pub async fn destroy_secret(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        self.check_versions_call(path, versions)?;
        Ok(self
            .store
            .destroy(path, versions, OffsetDateTime::now_utc())
            .await?)
    }

    fn check_versions_call(&self, path: &str, versions: &[u64]) -> Result<(), ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        validate::versions(versions).map_err(ServiceError::Invalid)?;
        self.root()?;
        Ok(())
    }

    /// Every secret path, sorted.
    pub async fn list_secrets(&self) -> Result<Vec<String>, ServiceError> {
        self.root()?;
        Ok(self.store.list_paths().await?)
    }

    /// A secret's metadata.
    pub async fn metadata(&self, path: &str) -> Result<MetadataResponse, ServiceError> {
        validate::path(path).map_err(ServiceError::Invalid)?;
        self.root()?;
        let meta = self.store.metadata(path).await?;
        Ok(MetadataResponse {
            versions: meta
                .versions
                .into_iter()
                .map(|v| {
                    (
                        v.version,
                        VersionMetadata {
                            version: v.version,
                            created_time: v.created_at,
                            deleted_time: v.deleted_at,
                            created_by: v.created_by,
                        },
                    )
                })
                .collect(),
            metadata: SecretMetadata {
                current_version: meta.current_version,
                oldest_version: meta.oldest_version,
                created_time: meta.created_at,
                updated_time: meta.updated_at,
                max_versions: meta.max_versions,
                created_by: meta.created_by,
            },
        })
    }
}
