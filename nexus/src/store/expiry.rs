//! The periodic prune of expired versions ([`Store::prune_expired`]).
//!
//! A version's deletion time is fixed when it is written (`secret_versions.expires_at`,
//! from the secret's `delete_version_after` then). From that time on it is unreadable; its
//! ciphertext stays stored until a write to the secret or this prune removes it. The prune
//! exists so that a secret nobody writes to again does not keep expired ciphertext forever.
//!
//! Safe with several replicas on one database: each path is pruned in its own transaction
//! that first takes the secret's row lock (as every secret write does, so no deadlock), and
//! the delete itself re-checks each version's deletion time; two replicas pruning at once
//! delete each version once, and the second finds nothing left (an idempotent delete).

use sqlx::Row;
use time::OffsetDateTime;

use super::secrets::prune_expired;
use super::versions::{lock_secret_if_present, refresh_summary_keeping_time};
use super::{Store, StoreError, to_millis};

/// Versions of one secret removed by [`Store::prune_expired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedVersions {
    /// The secret's path.
    pub path: String,
    /// The versions removed, ascending.
    pub versions: Vec<u64>,
}

impl Store {
    /// Removes from storage at most `limit` versions whose deletion time is at or before
    /// `now`, oldest deadline first, and returns them by secret. Versions whose deletion
    /// time is later, or that have none, are never touched. A version removed meanwhile
    /// (by another replica's prune, a write or a destroy) is simply not returned.
    pub async fn prune_expired(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PrunedVersions>, StoreError> {
        let now = to_millis(now);
        let rows = sqlx::query(
            "SELECT path, version FROM secret_versions \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 \
             ORDER BY expires_at, path, version LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        // Per path, how many of the batch's versions to remove (in path order of first
        // appearance, so the oldest deadlines go first).
        let mut batch: Vec<(String, i64)> = Vec::new();
        for row in &rows {
            let path: String = row.try_get("path")?;
            match batch.iter_mut().find(|(p, _)| *p == path) {
                Some((_, count)) => *count += 1,
                None => batch.push((path, 1)),
            }
        }
        let mut pruned = Vec::with_capacity(batch.len());
        for (path, count) in batch {
            let versions = self
                .write(move |tx| {
                    Box::pin(async move {
                        let tx = tx.conn().await?;
                        if !lock_secret_if_present(tx, &path).await? {
                            return Ok(PrunedVersions {
                                path,
                                versions: Vec::new(),
                            });
                        }
                        let versions = prune_expired(tx, &path, now, Some(count)).await?;
                        if !versions.is_empty() {
                            refresh_summary_keeping_time(tx, &path).await?;
                        }
                        Ok(PrunedVersions { path, versions })
                    })
                })
                .await?;
            if !versions.versions.is_empty() {
                pruned.push(versions);
            }
        }
        Ok(pruned)
    }
}
