//! Secrets: versioned maps of strings under a [`SecretPath`], sealed on the way into the
//! store and opened on the way out. Reached through [`Nexus::secrets`].
//!
//! Paths, values and version lists arrive parsed and checked ([`SecretPath`],
//! [`crate::validate`]). Every operation takes the [`Grant`] the authoriser made for it and
//! refuses one that is not for this operation on this path.

mod path;
pub mod prune;

use std::collections::BTreeMap;
use std::time::Duration;

use nexus_api::model::{
    GetSecretResponse, MetadataResponse, SecretMetadata, Values, VersionMetadata,
};
use nexus_crypto::{CryptoError, RootKey};
use policies::Permission;

pub use path::{MAX_PATH_LEN, PathError, SecretPath};

use crate::authz::Grant;
use crate::error::ServiceError;
use crate::keys::lifecycle::WritePermit;
use crate::keys::rotation::adopt_rotated_key;
use crate::keys::sealing::{self, SealingError};
use crate::service::Nexus;
use crate::store::{MetadataUpdate, PutVersion};
use crate::validate;

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
    /// The write permit for a change of `path`, once `grant` allows writing there, and the
    /// grant's caller as the change's author.
    async fn begin_write(
        &self,
        grant: &Grant,
        path: &SecretPath,
    ) -> Result<(WritePermit<'_>, String), ServiceError> {
        grant.for_path(Permission::Write, path.as_str())?;
        let permit = self
            .nexus
            .keys
            .write()
            .await
            .map_err(ServiceError::NotReady)?;
        Ok((permit, grant.caller().to_string()))
    }

    /// A put of a new version of `path` by `created_by`, under Nexus's settings and the
    /// write permit's fence.
    fn new_version<'a>(
        &self,
        path: &'a SecretPath,
        cas: Option<u64>,
        created_by: &'a str,
        fence: Option<&'a [u8]>,
    ) -> PutVersion<'a> {
        PutVersion {
            path: path.as_str(),
            cas,
            max_versions: self.nexus.max_versions,
            cas_required: self.nexus.cas_required,
            created_by,
            now: self.nexus.clock.now(),
            fence,
        }
    }

    /// Writes a new version of `path` (only if the current one is `cas`, when given), as
    /// written by the grant's caller; returns its number.
    pub async fn put(
        &self,
        grant: &Grant,
        path: &SecretPath,
        values: &Values,
        cas: Option<u64>,
    ) -> Result<u64, ServiceError> {
        let (permit, created_by) = self.begin_write(grant, path).await?;
        let nexus = self.nexus;
        let put = self.new_version(path, cas, &created_by, permit.fence());
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

    /// Writes a new version of `path`: its current version with `values` merged in (only
    /// if the latest version is `cas`, when given); returns its number. The merged version
    /// must stay within the limits of [`validate::values`], else nothing is written.
    pub async fn patch(
        &self,
        grant: &Grant,
        path: &SecretPath,
        values: &Values,
        cas: Option<u64>,
    ) -> Result<u64, ServiceError> {
        let (permit, created_by) = self.begin_write(grant, path).await?;
        let nexus = self.nexus;
        let put = self.new_version(path, cas, &created_by, permit.fence());
        let root = permit.root();
        // Why the merge refused the merged version, if it did: the store only learns that
        // the merge failed, and this says why (the caller's fault, not the cipher's).
        let mut refused = None;
        let merged = nexus
            .store
            .patch_version(put, |base, version| {
                let path = path.as_str();
                let mut merged = sealing::open_values(root, path, base.version, &base.sealed)
                    .map_err(|e| match e {
                        SealingError::Crypto(e) => e,
                        SealingError::Malformed => CryptoError::Decrypt,
                    })?;
                for (key, value) in values {
                    merged.insert(key.clone(), value.clone());
                }
                if let Err(error) = validate::values(&merged) {
                    refused = Some(error);
                    return Err(CryptoError::Encrypt);
                }
                sealing::seal_values(root, path, version, &merged)
            })
            .await;
        match (merged, refused) {
            (_, Some(error)) => Err(ServiceError::invalid(error)),
            (result, None) => result.map_err(|e| nexus.write_failed(e)),
        }
    }

    /// Updates the metadata of `path` (fields `None` are kept; `max_versions` 0 is Nexus's
    /// default), creating the secret without versions if it does not exist.
    pub async fn put_metadata(
        &self,
        grant: &Grant,
        path: &SecretPath,
        update: MetadataChange,
    ) -> Result<(), ServiceError> {
        let (permit, created_by) = self.begin_write(grant, path).await?;
        let nexus = self.nexus;
        let max_versions = update
            .max_versions
            .map(|n| if n == 0 { nexus.max_versions } else { n });
        nexus
            .store
            .put_metadata(MetadataUpdate {
                path: path.as_str(),
                max_versions,
                cas_required: update.cas_required,
                delete_version_after: update.delete_version_after,
                custom_metadata: update.custom_metadata.as_ref(),
                default_max_versions: nexus.max_versions,
                created_by: &created_by,
                now: nexus.clock.now(),
                fence: permit.fence(),
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
        let stored = nexus
            .store
            .get_live_version(path, version, nexus.clock.now())
            .await?;
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
        let mut paths = Vec::new();
        self.list_each(grant, |path| paths.push(path.to_owned()))
            .await?;
        Ok(paths)
    }

    /// Gives `emit` every secret path the grant's caller may read, sorted, one at a time:
    /// [`list`](Self::list) without a `String` per path, so a full list of 100,000 paths
    /// costs the database's one text of them and a vector of borrowed slices.
    pub async fn list_each(
        &self,
        grant: &Grant,
        emit: impl FnMut(&str),
    ) -> Result<(), ServiceError> {
        grant.for_listing()?;
        self.nexus.root()?;
        let list = self.nexus.store.path_list().await?;
        let paths = list.paths()?;
        self.nexus
            .access
            .each_readable(grant.caller(), paths.iter().map(|path| &**path), emit);
        Ok(())
    }

    /// One page of the secret paths the grant's caller may read that start with `prefix`,
    /// sorted, after `cursor`: at most `limit`, and the cursor of the next page when the
    /// page is full (the next page may then be empty).
    pub async fn list_page(
        &self,
        grant: &Grant,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), ServiceError> {
        grant.for_listing()?;
        self.nexus.root()?;
        // The database pages through every path; the caller's page holds those it may
        // read, so several database pages may make one answer.
        let chunk = limit.max(100);
        let mut after = cursor.unwrap_or_default().to_owned();
        let mut page = Vec::with_capacity(limit);
        loop {
            let paths = self
                .nexus
                .store
                .list_paths_page(prefix, &after, chunk)
                .await?;
            let exhausted = paths.len() < chunk;
            if let Some(last) = paths.last() {
                after.clone_from(last);
            }
            for path in self.nexus.access.readable(grant.caller(), paths) {
                page.push(path);
                if page.len() == limit {
                    let next = page.last().cloned();
                    return Ok((page, next));
                }
            }
            if exhausted {
                return Ok((page, None));
            }
        }
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
        let now = self.nexus.clock.now();
        let after = meta.delete_version_after;
        Ok(MetadataResponse {
            versions: meta
                .versions
                .into_iter()
                .map(|v| {
                    // An expired version shows as deleted at the time it expired.
                    let expired = v.expires_at.filter(|at| *at <= now);
                    // Vault's deletion_time: when the version became, or becomes,
                    // unreadable: soft-deleted, or its deadline fixed when it was written.
                    let deletion = match (v.deleted_at, v.expires_at) {
                        (Some(deleted), Some(expires)) => Some(deleted.min(expires)),
                        (deleted, expires) => deleted.or(expires),
                    };
                    (
                        v.version,
                        VersionMetadata {
                            version: v.version,
                            created_time: v.created_at,
                            deleted_time: v.deleted_at.or(expired),
                            deletion_time: deletion,
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
                custom_metadata: meta.custom_metadata,
                cas_required: meta.cas_required,
                delete_version_after: humantime::format_duration(after).to_string(),
            },
        })
    }
}

/// A metadata-only update as checked at the edge ([`Secrets::put_metadata`]): each field
/// given replaces the stored one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChange {
    /// Versions to keep (0: Nexus's default).
    pub max_versions: Option<u32>,
    /// Whether every write must carry check-and-set.
    pub cas_required: Option<bool>,
    /// Age after which versions expire (zero: never).
    pub delete_version_after: Option<Duration>,
    /// The whole custom metadata map.
    pub custom_metadata: Option<BTreeMap<String, String>>,
}
