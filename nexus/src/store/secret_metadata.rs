//! Metadata-only updates of a secret (Vault's `metadata put`): `max_versions`,
//! `cas_required`, `delete_version_after` and `custom_metadata`, without writing a version.

use sqlx::Row;

use super::secrets::prune_expired;
use super::versions::refresh_summary;
use super::{MetadataUpdate, Store, StoreError, to_millis};

impl Store {
    /// Applies `update` to the secret at `update.path` (creating it without versions if it
    /// does not exist, as Vault does), in one transaction that starts with the write fence.
    /// Versions that fall out of a lowered `max_versions`, and versions whose deletion time
    /// has passed, leave storage in the same transaction. A new `delete_version_after`
    /// applies to versions written from now on: existing versions keep the deletion time
    /// they were written with, as in Vault.
    pub async fn put_metadata(&self, update: MetadataUpdate<'_>) -> Result<(), StoreError> {
        let now = to_millis(update.now);
        let custom_metadata = update
            .custom_metadata
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| {
                StoreError::Corrupt(super::Corruption::CustomMetadata {
                    path: update.path.to_owned(),
                })
            })?;
        let mut tx = self.begin_write().await?;
        self.check_fence(&mut tx, update.fence).await?;
        // Creates the row or, if it exists, takes its write lock (as every secret write
        // does first, so concurrent writers serialise on it).
        sqlx::query(
            "INSERT INTO secrets (path, current_version, oldest_version, latest_version, \
             max_versions, created_at, updated_at, created_by) \
             VALUES ($1, 0, 0, 0, $2, $3, $3, $4) \
             ON CONFLICT (path) DO UPDATE SET updated_at = $3",
        )
        .bind(update.path)
        .bind(i64::from(update.default_max_versions.max(1)))
        .bind(now)
        .bind(update.created_by)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "UPDATE secrets SET \
             max_versions = COALESCE($2, max_versions), \
             cas_required = COALESCE($3, cas_required), \
             delete_version_after = COALESCE($4, delete_version_after), \
             custom_metadata = COALESCE($5, custom_metadata) \
             WHERE path = $1 RETURNING latest_version, max_versions",
        )
        .bind(update.path)
        .bind(update.max_versions.map(|n| i64::from(n.max(1))))
        .bind(update.cas_required.map(i64::from))
        .bind(
            update
                .delete_version_after
                .map(|after| i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
        )
        .bind(custom_metadata)
        .fetch_one(&mut *tx)
        .await?;
        let latest: i64 = row.try_get("latest_version")?;
        let max_versions: i64 = row.try_get("max_versions")?;
        sqlx::query("DELETE FROM secret_versions WHERE path = $1 AND version <= $2")
            .bind(update.path)
            .bind(latest - max_versions)
            .execute(&mut *tx)
            .await?;
        prune_expired(&mut tx, update.path, now, None).await?;
        refresh_summary(&mut tx, update.path, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
