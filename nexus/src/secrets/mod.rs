//! Secrets: versioned maps of strings under a [`SecretPath`], sealed on the way into the
//! store and opened on the way out. Reached through [`Nexus::secrets`].
//!
//! Paths, values and version lists arrive parsed and checked ([`SecretPath`],
//! [`crate::validate`]). Every operation takes the [`Grant`] the authoriser made for it and
//! refuses one that is not for this operation on this path.

mod path;

use nexus_api::model::{
    GetSecretResponse, MetadataResponse, SecretMetadata, Values, VersionMetadata,
};
use nexus_crypto::RootKey;
use policies::Permission;

pub use path::{MAX_PATH_LEN, PathError, SecretPath};

use crate::authz::Grant;
use crate::error::ServiceError;
use crate::keys::rotation::adopt_rotated_key;
use crate::keys::sealing;
use crate::service::Nexus;
use crate::store::PutVersion;

/// The secret operations of one Nexus.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    nexus: &'a Nexus,
}

impl<'a> Secrets<'a> {
    /// The secret operations of `nexus`.
    pub(crate) fn new(nexus: &'a Nexus) -> Self {
        Secrets { nexus }
    }
}

/// Which soft change [`Secrets::change`] makes to versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChange {
    /// Soft-delete: kept, but unreadable until undeleted.
    Delete,
    /// Restore soft-deleted versions.
    Undelete,
    /// Remove for good (the whole secret when no version is named).
    Destroy,
}

impl Secrets<'_> {
    /// Writes a new version of `path` (only if the current one is `cas`, when given), as
    /// written by the grant's caller; returns its number.
    pub async fn put(
        &self,
        grant: &Grant,
        path: &SecretPath,
        values: &Values,
        cas: Option<u64>,
    ) -> Result<u64, ServiceError> {
        grant.for_path(Permission::Write, path.as_str())?;
        let nexus = self.nexus;
        let permit = nexus.keys.write().await.map_err(ServiceError::NotReady)?;
        let created_by = grant.caller().to_string();
        let put = PutVersion {
            path: path.as_str(),
            cas,
            max_versions: nexus.max_versions,
            created_by: &created_by,
            now: nexus.clock.now(),
            fence: permit.fence(),
        };
        // The seal runs where the write is committed (the store's writer task, see
        // `store::group_commit`), so it owns its inputs; the copy of the values is zeroized
        // on drop like the original.
        let root = permit.root().clone();
        let (sealed_path, values) = (path.as_str().to_owned(), values.clone());
        nexus
            .store
            .put_version(put, move |version| {
                sealing::seal_values(&root, &sealed_path, version, &values)
            })
            .await
            .map_err(|e| nexus.write_failed(e))
    }

    /// Reads a version of `path` (0: the current one).
    pub async fn get(
        &self,
        grant: &Grant,
        path: &SecretPath,
        version: u64,
    ) -> Result<GetSecretResponse, ServiceError> {
        grant.for_path(Permission::Read, path.as_str())?;
        let nexus = self.nexus;
        let root = nexus.root()?;
        let path = path.as_str();
        let stored = nexus.store.get_version(path, version).await?;
        let open = |key: &RootKey| sealing::open_values(key, path, stored.version, &stored.sealed);
        let data = match nexus.open(&root, open) {
            Ok(data) => data,
            // The key was rotated (here, between reading the key and the record, or by
            // another replica) and this record re-wrapped: open it with the key now current.
            Err(error) => {
                let current = match adopt_rotated_key(nexus, true).await? {
                    Some(new) => new,
                    None => nexus.root()?,
                };
                nexus.open(&current, open).map_err(|_| error)?
            }
        };
        Ok(GetSecretResponse {
            data,
            version: stored.version,
        })
    }

    /// Soft-deletes, undeletes or destroys `versions` of `path` (none named: the current
    /// one, or for destroy the whole secret).
    pub async fn change(
        &self,
        grant: &Grant,
        change: VersionChange,
        path: &SecretPath,
        versions: &[u64],
    ) -> Result<(), ServiceError> {
        grant.for_path(Permission::Write, path.as_str())?;
        let nexus = self.nexus;
        nexus.root()?;
        let (store, path, now) = (&nexus.store, path.as_str(), nexus.clock.now());
        match change {
            VersionChange::Delete => store.delete_versions(path, versions, now).await?,
            VersionChange::Undelete => store.undelete_versions(path, versions, now).await?,
            VersionChange::Destroy => store.destroy(path, versions, now).await?,
        }
        Ok(())
    }

    /// Every secret path the grant's caller may read, sorted.
    pub async fn list(&self, grant: &Grant) -> Result<Vec<String>, ServiceError> {
        grant.for_listing()?;
        self.nexus.root()?;
        let paths = self.nexus.store.list_paths().await?;
        Ok(self.nexus.access.readable(grant.caller(), paths))
    }

    /// The metadata of the secret at `path`.
    pub async fn metadata(
        &self,
        grant: &Grant,
        path: &SecretPath,
    ) -> Result<MetadataResponse, ServiceError> {
        grant.for_path(Permission::Read, path.as_str())?;
        self.nexus.root()?;
        let meta = self.nexus.store.metadata(path.as_str()).await?;
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
