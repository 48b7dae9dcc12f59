//! Changing a secret's existing versions: soft delete, undelete, destroy, and the summary
//! columns (`current_version`, `oldest_version`) every change recomputes.

use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{Missing, Store, StoreError, to_millis, version_to_db};

impl Store {
    /// Soft-deletes versions of `path`: they stay stored but cannot be read until undeleted.
    /// An empty list, or `0` in it, means the current version; unknown versions are
    /// ignored. Fails with [`StoreError::NotFound`] only if the secret does not exist.
    pub async fn delete_versions(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_millis(now);
        let (path, versions) = (path.to_owned(), versions.to_vec());
        self.write(move |tx| {
            Box::pin(async move {
                let tx = tx.conn().await?;
                let current = lock_secret(tx, &path).await?;
                for version in with_current(&versions, current) {
                    sqlx::query(
                        "UPDATE secret_versions SET deleted_at = $3 \
                         WHERE path = $1 AND version = $2 AND deleted_at IS NULL",
                    )
                    .bind(&path)
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                refresh_summary(tx, &path, now).await
            })
        })
        .await
    }

    /// Restores soft-deleted versions of `path`. An empty list, or `0` in it, means the
    /// current version, or, when every version is deleted (current is 0), the highest
    /// deleted one. Fails with [`StoreError::NotFound`] if the secret does not exist or no
    /// version was restored.
    pub async fn undelete_versions(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_millis(now);
        let (path, versions) = (path.to_owned(), versions.to_vec());
        self.write(move |tx| {
            Box::pin(async move { undelete_in(tx.conn().await?, path, versions, now).await })
        })
        .await
    }

    /// Removes versions of `path` from storage for good. An empty list removes the whole
    /// secret (it leaves the listing, and a later put starts again at version 1); otherwise
    /// `0` in the list means the current version and the secret keeps its version counter.
    /// Fails with [`StoreError::NotFound`] if the secret does not exist or none of the
    /// versions did.
    pub async fn destroy(
        &self,
        path: &str,
        versions: &[u64],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (path, versions) = (path.to_owned(), versions.to_vec());
        let now = to_millis(now);
        self.write(move |tx| {
            Box::pin(async move { destroy_in(tx.conn().await?, path, versions, now).await })
        })
        .await
    }
}

/// The SQL of [`Store::undelete_versions`].
async fn undelete_in(
    tx: &mut AnyConnection,
    path: String,
    versions: Vec<u64>,
    now: i64,
) -> Result<(), StoreError> {
    let mut current = lock_secret(tx, &path).await?;
    if current == 0 && (versions.is_empty() || versions.contains(&0)) {
        let row = sqlx::query(
            "SELECT MAX(version) AS version FROM secret_versions \
             WHERE path = $1 AND deleted_at IS NOT NULL",
        )
        .bind(&path)
        .fetch_one(&mut *tx)
        .await?;
        current = row.try_get::<Option<i64>, _>("version")?.unwrap_or(0);
    }
    let mut restored = 0;
    for version in with_current(&versions, current) {
        restored += sqlx::query(
            "UPDATE secret_versions SET deleted_at = NULL \
             WHERE path = $1 AND version = $2 AND deleted_at IS NOT NULL",
        )
        .bind(&path)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if restored == 0 {
        let what = if versions.iter().all(|&v| v == 0) {
            Missing::DeletedCurrentVersion(path)
        } else {
            Missing::DeletedVersions { path, versions }
        };
        return Err(StoreError::NotFound(what));
    }
    refresh_summary(tx, &path, now).await
}

/// The SQL of [`Store::destroy`].
async fn destroy_in(
    tx: &mut AnyConnection,
    path: String,
    versions: Vec<u64>,
    now: i64,
) -> Result<(), StoreError> {
    if versions.is_empty() {
        // Deleting the secret row first takes its lock, in the same order as every
        // other writer (secret row, then versions), so no deadlock on PostgreSQL.
        let deleted = sqlx::query("DELETE FROM secrets WHERE path = $1")
            .bind(&path)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(Missing::Secret(path)));
        }
        // ON DELETE CASCADE has done this already; stated so that no version can
        // outlive its secret even on a connection without foreign keys enabled.
        sqlx::query("DELETE FROM secret_versions WHERE path = $1")
            .bind(&path)
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }

    let current = lock_secret(tx, &path).await?;
    let mut destroyed = 0;
    for version in with_current(&versions, current) {
        destroyed += sqlx::query("DELETE FROM secret_versions WHERE path = $1 AND version = $2")
            .bind(&path)
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    if destroyed == 0 {
        return Err(StoreError::NotFound(Missing::Versions { path, versions }));
    }
    refresh_summary(tx, &path, now).await
}

/// Takes the write lock on the secret's row (a no-op update: PostgreSQL locks the row, so
/// no concurrent write interleaves with this transaction) and returns its current version.
async fn lock_secret(tx: &mut AnyConnection, path: &str) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE secrets SET updated_at = updated_at WHERE path = $1 RETURNING current_version",
    )
    .bind(path)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(Missing::Secret(path.to_owned())))?;
    Ok(row.try_get("current_version")?)
}

/// As [`lock_secret`], for a secret that may be gone: `false` if it does not exist.
pub(super) async fn lock_secret_if_present(
    tx: &mut AnyConnection,
    path: &str,
) -> Result<bool, StoreError> {
    match lock_secret(tx, path).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// As [`refresh_summary`], leaving `updated_at` as it was: for the periodic prune, which
/// removes what was already unreadable and is no change a caller made.
pub(super) async fn refresh_summary_keeping_time(
    tx: &mut AnyConnection,
    path: &str,
) -> Result<(), StoreError> {
    summary(tx, path, None).await
}

/// Recomputes `current_version` (highest non-deleted, 0 if none) and `oldest_version`
/// (lowest stored non-deleted, 0 if none) from the version rows, and sets `updated_at`.
pub(super) async fn refresh_summary(
    tx: &mut AnyConnection,
    path: &str,
    now: i64,
) -> Result<(), StoreError> {
    summary(tx, path, Some(now)).await
}

async fn summary(tx: &mut AnyConnection, path: &str, now: Option<i64>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE secrets SET \
         current_version = COALESCE((SELECT MAX(version) FROM secret_versions \
             WHERE path = $1 AND deleted_at IS NULL), 0), \
         oldest_version = COALESCE((SELECT MIN(version) FROM secret_versions \
             WHERE path = $1 AND deleted_at IS NULL), 0), \
         updated_at = COALESCE($2, updated_at) \
         WHERE path = $1",
    )
    .bind(path)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The version numbers to act on, as stored: `0` (or an empty list) replaced by `current`,
/// numbers that cannot exist (0 with no current version, beyond `i64::MAX`) dropped,
/// duplicates removed.
fn with_current(versions: &[u64], current: i64) -> Vec<i64> {
    let versions = if versions.is_empty() {
        &[0][..]
    } else {
        versions
    };
    let mut out: Vec<i64> = versions
        .iter()
        .filter_map(|&v| {
            if v == 0 {
                Some(current)
            } else {
                version_to_db(v)
            }
        })
        .filter(|&v| v > 0)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::with_current;

    #[test]
    fn zero_and_empty_mean_current() {
        assert_eq!(with_current(&[], 4), vec![4]);
        assert_eq!(with_current(&[0, 2, 2], 4), vec![2, 4]);
        assert_eq!(with_current(&[], 0), Vec::<i64>::new());
        assert_eq!(with_current(&[u64::MAX, 1], 0), vec![1]);
    }
}
