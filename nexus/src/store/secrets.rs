//! Writing and reading secret versions (`secrets`, `secret_versions`).

use std::collections::BTreeMap;
use std::time::Duration;

use nexus_crypto::CryptoError;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use time::OffsetDateTime;

use super::versions::refresh_summary;
use super::{
    Backend, Corruption, Missing, PutVersion, SealedRecord, SecretMeta, Store, StoreError,
    StoredVersion, VersionMeta, fence_holds, from_millis, to_millis, version_from_db,
    version_to_db,
};

impl Store {
    /// Writes a new version of `put.path` and returns its number: the highest version ever
    /// written plus one (numbers are never reused, even after a delete or destroy; a secret
    /// destroyed whole starts again at 1).
    ///
    /// `seal` is called with that number inside the transaction, so the ciphertext can bind
    /// it; its error aborts the put. With `put.cas = Some(n)`, the put succeeds only if the
    /// latest version is `n`, else [`StoreError::CasMismatch`]. Versions that fall out of the
    /// secret's `max_versions` window are deleted from storage.
    ///
    /// Concurrent puts are committed together ([`Store::write`]), so `seal` must own what
    /// it uses: it may run on the writer task.
    pub async fn put_version<F>(&self, put: PutVersion<'_>, seal: F) -> Result<u64, StoreError>
    where
        F: FnOnce(u64) -> Result<SealedRecord, CryptoError> + Send + 'static,
    {
        let backend = self.backend;
        let (path, created_by) = (put.path.to_owned(), put.created_by.to_owned());
        let fence = put.fence.map(<[u8]>::to_vec);
        let (cas, max_versions, cas_required, now) =
            (put.cas, put.max_versions, put.cas_required, put.now);
        self.write(move |tx| {
            Box::pin(async move {
                let put = PutVersion {
                    path: &path,
                    cas,
                    max_versions,
                    cas_required,
                    created_by: &created_by,
                    now,
                    fence: fence.as_deref(),
                };
                put_version_in(tx, backend, put, seal).await
            })
        })
        .await
    }

    /// Writes a new version of `put.path` made from its current version by `merge` (Vault's
    /// patch) and returns its number. `merge` is called inside the transaction with the
    /// current version as stored and the new version's number; its error aborts the patch.
    ///
    /// Fails with [`StoreError::NotFound`] if the secret does not exist or has no readable
    /// current version (deleted or expired); check-and-set and `cas_required` as for
    /// [`put_version`](Self::put_version), as are pruning and the fence.
    pub async fn patch_version<F>(&self, put: PutVersion<'_>, merge: F) -> Result<u64, StoreError>
    where
        F: FnOnce(&StoredVersion, u64) -> Result<SealedRecord, CryptoError> + Send,
    {
        let now = to_millis(put.now);
        let mut tx = self.begin_write().await?;
        self.check_fence(&mut tx, put.fence).await?;
        // Claims the next number and takes the row's write lock; nothing for a new path.
        let Some(row) = sqlx::query(
            "UPDATE secrets SET latest_version = latest_version + 1 WHERE path = $1 \
             RETURNING current_version, latest_version, max_versions, cas_required, \
             delete_version_after",
        )
        .bind(put.path)
        .fetch_optional(&mut *tx)
        .await?
        else {
            tx.rollback().await?;
            return Err(StoreError::NotFound(Missing::Secret(put.path.to_owned())));
        };
        let version: i64 = row.try_get("latest_version")?;
        let current: i64 = row.try_get("current_version")?;
        let max_versions: i64 = row.try_get("max_versions")?;
        let delete_after: i64 = row.try_get("delete_version_after")?;
        let cas_required = row.try_get::<i64, _>("cas_required")? != 0;
        if put.cas.is_none() && (put.cas_required || cas_required) {
            tx.rollback().await?;
            return Err(StoreError::CasRequired(put.path.to_owned()));
        }
        let previous = version - 1;
        if let Some(expected) = put.cas
            && version_to_db(expected) != Some(previous)
        {
            tx.rollback().await?;
            return Err(StoreError::CasMismatch {
                expected,
                current: version_from_db(previous, "secrets.latest_version")?,
            });
        }
        let base = sqlx::query(
            "SELECT expires_at, wrapped_key, ciphertext FROM secret_versions \
             WHERE path = $1 AND version = $2 AND deleted_at IS NULL",
        )
        .bind(put.path)
        .bind(current)
        .fetch_optional(&mut *tx)
        .await?;
        let base = match base {
            Some(row) if !expired(row.try_get("expires_at")?, now) => StoredVersion {
                version: version_from_db(current, "secrets.current_version")?,
                sealed: SealedRecord {
                    wrapped_key: row.try_get("wrapped_key")?,
                    ciphertext: row.try_get("ciphertext")?,
                },
            },
            _ => {
                tx.rollback().await?;
                return Err(StoreError::NotFound(Missing::CurrentVersion(
                    put.path.to_owned(),
                )));
            }
        };
        let sealed = match merge(&base, version_from_db(version, "secrets.latest_version")?) {
            Ok(sealed) => sealed,
            Err(err) => {
                tx.rollback().await?;
                return Err(err.into());
            }
        };
        insert_version(&mut tx, &put, version, now, delete_after, sealed).await?;
        sqlx::query("DELETE FROM secret_versions WHERE path = $1 AND version <= $2")
            .bind(put.path)
            .bind(version - max_versions)
            .execute(&mut *tx)
            .await?;
        prune_expired(&mut tx, put.path, now).await?;
        refresh_summary(&mut tx, put.path, now).await?;
        tx.commit().await?;
        version_from_db(version, "secrets.latest_version")
    }

    /// Reads one version of a secret; `0` means the current one. A missing secret, a
    /// missing (pruned, destroyed, never written) or soft-deleted version, and version 0 of
    /// a secret whose versions are all deleted are [`StoreError::NotFound`].
    pub async fn get_version(&self, path: &str, version: u64) -> Result<StoredVersion, StoreError> {
        self.read_version(path, version, None).await
    }

    /// As [`get_version`](Self::get_version), and a version older than the secret's
    /// `delete_version_after` at `now` (expired, not yet pruned) is
    /// [`StoreError::NotFound`] too.
    pub async fn get_live_version(
        &self,
        path: &str,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<StoredVersion, StoreError> {
        self.read_version(path, version, Some(to_millis(now))).await
    }

    async fn read_version(
        &self,
        path: &str,
        version: u64,
        now: Option<i64>,
    ) -> Result<StoredVersion, StoreError> {
        let Some(wanted) = version_to_db(version) else {
            return Err(StoreError::NotFound(Missing::Versions {
                path: path.to_owned(),
                versions: vec![version],
            }));
        };
        // One statement, so the current version and its row are read from one snapshot.
        let row = sqlx::query(
            "SELECT s.current_version, v.version, v.expires_at, \
             v.deleted_at, v.wrapped_key, v.ciphertext \
             FROM secrets s LEFT JOIN secret_versions v ON v.path = s.path \
             AND v.version = (CASE WHEN $2 = 0 THEN s.current_version ELSE $2 END) \
             WHERE s.path = $1",
        )
        .bind(path)
        .bind(wanted)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(Missing::Secret(path.to_owned())))?;

        let found: Option<i64> = row.try_get("version")?;
        let mut deleted_at: Option<i64> = row.try_get("deleted_at")?;
        if let (Some(now), Some(_)) = (now, found)
            && expired(row.try_get("expires_at")?, now)
        {
            deleted_at = deleted_at.or(Some(now));
        }
        let (Some(found), None) = (found, deleted_at) else {
            return Err(StoreError::NotFound(if version == 0 {
                Missing::CurrentVersion(path.to_owned())
            } else {
                Missing::Versions {
                    path: path.to_owned(),
                    versions: vec![version],
                }
            }));
        };
        Ok(StoredVersion {
            version: version_from_db(found, "secret_versions.version")?,
            sealed: SealedRecord {
                wrapped_key: row.try_get("wrapped_key")?,
                ciphertext: row.try_get("ciphertext")?,
            },
        })
    }

    /// A secret's metadata and the metadata of its stored versions.
    pub async fn metadata(&self, path: &str) -> Result<SecretMeta, StoreError> {
        // One statement (secret LEFT JOIN versions) for a consistent snapshot on PostgreSQL.
        let rows = sqlx::query(
            "SELECT s.current_version, s.oldest_version, s.latest_version, s.max_versions, \
             s.created_at, s.updated_at, s.created_by, s.custom_metadata, s.cas_required, \
             s.delete_version_after, v.version, \
             v.created_at AS version_created_at, v.deleted_at, v.expires_at, \
             v.created_by AS version_created_by \
             FROM secrets s LEFT JOIN secret_versions v ON v.path = s.path \
             WHERE s.path = $1 ORDER BY v.version",
        )
        .bind(path)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::NotFound(Missing::Secret(path.to_owned())));
        };
        let max_versions: i64 = first.try_get("max_versions")?;
        let mut meta = SecretMeta {
            path: path.to_owned(),
            current_version: version_column(first, "current_version")?,
            oldest_version: version_column(first, "oldest_version")?,
            latest_version: version_column(first, "latest_version")?,
            max_versions: u32::try_from(max_versions).map_err(|_| {
                StoreError::Corrupt(Corruption::OutOfRange {
                    column: "secrets.max_versions".into(),
                    value: max_versions,
                })
            })?,
            created_at: from_millis(first.try_get("created_at")?, "secrets.created_at")?,
            updated_at: from_millis(first.try_get("updated_at")?, "secrets.updated_at")?,
            created_by: first.try_get("created_by")?,
            custom_metadata: custom_metadata_column(first, path)?,
            cas_required: first.try_get::<i64, _>("cas_required")? != 0,
            delete_version_after: Duration::from_millis(version_from_db(
                first.try_get("delete_version_after")?,
                "secrets.delete_version_after",
            )?),
            versions: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            if let Some(version) = version_meta(row)? {
                meta.versions.push(version);
            }
        }
        Ok(meta)
    }

    /// Every secret path (including secrets whose versions are all deleted, excluding
    /// destroyed ones), sorted ascending byte-wise.
    pub async fn list_paths(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT path FROM secrets ORDER BY path")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| row.try_get("path").map_err(StoreError::from))
            .collect()
    }

    /// Up to `limit` secret paths that start with `prefix` and sort after `after` (byte-wise,
    /// ascending; `""` for the first page).
    pub async fn list_paths_page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT path FROM secrets WHERE path >= $1 AND path > $2 \
             AND substr(path, 1, length($1)) = $1 ORDER BY path LIMIT $3",
        )
        .bind(prefix)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get("path").map_err(StoreError::from))
            .collect()
    }

    /// How many secrets exist (as [`list_paths`](Self::list_paths) counts them).
    pub async fn secret_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM secrets")
            .fetch_one(&self.pool)
            .await?;
        version_from_db(row.try_get("n")?, "COUNT(*)")
    }
}

/// The SQL of [`Store::put_version`], in the transaction it is given; an error leaves the
/// rolling back to the caller.
async fn put_version_in<F>(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    put: PutVersion<'_>,
    seal: F,
) -> Result<u64, StoreError>
where
    F: FnOnce(u64) -> Result<SealedRecord, CryptoError>,
{
    let now = to_millis(put.now);
    fence_holds(tx, backend, put.fence).await?;
    let (version, max_versions, secret_cas_required, delete_after) =
        claim_version(tx, &put, now).await?;

    if put.cas.is_none() && (put.cas_required || secret_cas_required) {
        return Err(StoreError::CasRequired(put.path.to_owned()));
    }
    let previous = version - 1;
    if let Some(expected) = put.cas
        && version_to_db(expected) != Some(previous)
    {
        return Err(StoreError::CasMismatch {
            expected,
            current: version_from_db(previous, "secrets.latest_version")?,
        });
    }

    let sealed = seal(version_from_db(version, "secrets.latest_version")?)?;
    insert_version(tx, &put, version, now, delete_after, sealed).await?;

    // Keep the newest max_versions; older ones leave storage, not just the listing.
    sqlx::query("DELETE FROM secret_versions WHERE path = $1 AND version <= $2")
        .bind(put.path)
        .bind(version - max_versions)
        .execute(&mut **tx)
        .await?;
    prune_expired(tx, put.path, now).await?;
    refresh_summary(tx, put.path, now).await?;
    version_from_db(version, "secrets.latest_version")
}

/// Stores version `version` of `put.path`, written at `now`, with its deletion time fixed
/// now from the secret's `delete_version_after` (`0`: it never expires), as Vault fixes a
/// version's `deletion_time` when it is written.
async fn insert_version(
    tx: &mut Transaction<'static, Any>,
    put: &PutVersion<'_>,
    version: i64,
    now: i64,
    delete_version_after: i64,
    sealed: SealedRecord,
) -> Result<(), StoreError> {
    let expires_at = (delete_version_after > 0).then(|| now.saturating_add(delete_version_after));
    sqlx::query(
        "INSERT INTO secret_versions (path, version, created_at, deleted_at, created_by, \
         wrapped_key, ciphertext, expires_at) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7)",
    )
    .bind(put.path)
    .bind(version)
    .bind(now)
    .bind(put.created_by)
    .bind(sealed.wrapped_key)
    .bind(sealed.ciphertext)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims the next version number of `put.path`, creating the secret if needed, and
/// returns it with the secret's `max_versions`, `cas_required` and `delete_version_after`.
///
/// A single upsert: it inserts the row (as version 1) or increments `latest_version`, and
/// either way holds the row's write lock until the transaction ends. On PostgreSQL that
/// serialises concurrent puts to one path even under READ COMMITTED (a waiting upsert sees
/// the winner's committed row); on SQLite `BEGIN IMMEDIATE` has serialised them already.
async fn claim_version(
    tx: &mut Transaction<'static, Any>,
    put: &PutVersion<'_>,
    now: i64,
) -> Result<(i64, i64, bool, i64), StoreError> {
    let row = sqlx::query(
        "INSERT INTO secrets (path, current_version, oldest_version, latest_version, \
         max_versions, created_at, updated_at, created_by) \
         VALUES ($1, 0, 0, 1, $2, $3, $3, $4) \
         ON CONFLICT (path) DO UPDATE SET latest_version = secrets.latest_version + 1 \
         RETURNING latest_version, max_versions, cas_required, delete_version_after",
    )
    .bind(put.path)
    .bind(i64::from(put.max_versions.max(1)))
    .bind(now)
    .bind(put.created_by)
    .fetch_one(&mut **tx)
    .await?;
    let version: i64 = row.try_get("latest_version")?;
    let max_versions: i64 = row.try_get("max_versions")?;
    let cas_required: i64 = row.try_get("cas_required")?;
    let delete_after: i64 = row.try_get("delete_version_after")?;
    if version < 1 || max_versions < 1 {
        return Err(StoreError::Corrupt(Corruption::Counters {
            path: put.path.to_owned(),
            latest: version,
            max: max_versions,
        }));
    }
    Ok((version, max_versions, cas_required != 0, delete_after))
}

/// Whether a version whose deletion time is `expires_at` (`None`: never) has expired at
/// `now` (milliseconds).
pub(super) fn expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// Removes from storage the versions of `path` whose deletion time has come (they have been
/// unreadable since) and returns their numbers. Versions not yet expired are never touched:
/// the condition is the deletion time stored with each version, checked in the statement
/// itself.
pub(super) async fn prune_expired(
    tx: &mut Transaction<'static, Any>,
    path: &str,
    now: i64,
) -> Result<Vec<u64>, StoreError> {
    let rows = sqlx::query(
        "DELETE FROM secret_versions WHERE path = $1 \
         AND expires_at IS NOT NULL AND expires_at <= $2 RETURNING version",
    )
    .bind(path)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let mut versions = rows
        .iter()
        .map(|row| version_column(row, "version"))
        .collect::<Result<Vec<_>, _>>()?;
    versions.sort_unstable();
    Ok(versions)
}

/// As [`prune_expired`], for at most `limit` versions of `path`, lowest first: the
/// periodic prune's bounded step ([`Store::prune_expired`](super::Store::prune_expired)).
pub(super) async fn prune_some_expired(
    tx: &mut Transaction<'static, Any>,
    path: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<u64>, StoreError> {
    let rows = sqlx::query(
        "DELETE FROM secret_versions WHERE path = $1 AND expires_at IS NOT NULL \
         AND expires_at <= $2 AND version IN (SELECT version FROM secret_versions \
         WHERE path = $1 AND expires_at IS NOT NULL AND expires_at <= $2 \
         ORDER BY version LIMIT $3) RETURNING version",
    )
    .bind(path)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut versions = rows
        .iter()
        .map(|row| version_column(row, "version"))
        .collect::<Result<Vec<_>, _>>()?;
    versions.sort_unstable();
    Ok(versions)
}

/// The stored custom metadata map of a secret's row.
fn custom_metadata_column(
    row: &AnyRow,
    path: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let text: String = row.try_get("custom_metadata")?;
    serde_json::from_str(&text).map_err(|_| {
        StoreError::Corrupt(Corruption::CustomMetadata {
            path: path.to_owned(),
        })
    })
}

fn version_column(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    version_from_db(row.try_get(column)?, column)
}

/// The version half of a metadata row; `None` for the NULLs of a secret without versions.
fn version_meta(row: &AnyRow) -> Result<Option<VersionMeta>, StoreError> {
    let Some(version) = row.try_get::<Option<i64>, _>("version")? else {
        return Ok(None);
    };
    let created_at: i64 = row.try_get("version_created_at")?;
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    Ok(Some(VersionMeta {
        version: version_from_db(version, "secret_versions.version")?,
        created_at: from_millis(created_at, "secret_versions.created_at")?,
        deleted_at: deleted_at
            .map(|millis| from_millis(millis, "secret_versions.deleted_at"))
            .transpose()?,
        expires_at: expires_at
            .map(|millis| from_millis(millis, "secret_versions.expires_at"))
            .transpose()?,
        created_by: row.try_get("version_created_by")?,
    }))
}
