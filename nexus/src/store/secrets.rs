//! Writing and reading secret versions (`secrets`, `secret_versions`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nexus_crypto::CryptoError;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};
use time::OffsetDateTime;

use super::group_commit::WriteTx;
use super::read_cache::{Found, VersionRow};
use super::versions::refresh_summary;
use super::{
    Backend, Corruption, Missing, PutVersion, SealedRecord, SecretMeta, Store, StoreError,
    StoredVersion, VersionMeta, fence_holds, fence_verdict, from_millis, to_millis,
    version_from_db, version_to_db,
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
        if self.backend == Backend::Postgres {
            // The share lock first, as every sealed write takes it (see `fence_holds`).
            self.check_fence(&mut tx, put.fence).await?;
        }
        // Claims the next number and takes the row's write lock; nothing for a new path.
        // The fence's columns come with it, one statement fewer (see `claim_version`).
        let Some(row) = sqlx::query(
            "UPDATE secrets SET latest_version = latest_version + 1 WHERE path = $1 \
             RETURNING current_version, latest_version, max_versions, cas_required, \
             delete_version_after, \
             (SELECT key_check FROM root_key WHERE id = 1) AS key_check, \
             (SELECT sealed_at FROM root_key WHERE id = 1) AS sealed_at",
        )
        .bind(put.path)
        .fetch_optional(&mut *tx)
        .await?
        else {
            // No row, so no fence columns: the fence's verdict still comes first.
            let fence = fence_holds(&mut tx, self.backend, put.fence).await;
            tx.rollback().await?;
            fence?;
            return Err(StoreError::NotFound(Missing::Secret(put.path.to_owned())));
        };
        if let Some(expected) = put.fence {
            let key_check: Option<Vec<u8>> = row.try_get("key_check")?;
            if let Err(error) =
                fence_verdict(expected, key_check.as_deref(), row.try_get("sealed_at")?)
            {
                tx.rollback().await?;
                return Err(error);
            }
        }
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
        finish_version(
            &mut WriteTx::begun(&mut tx),
            self.backend,
            &put,
            NewVersion {
                version,
                now,
                max_versions,
                delete_version_after: delete_after,
            },
            sealed,
        )
        .await?;
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
        let found = match &self.cache {
            None => Arc::new(self.fetch_version(path, wanted).await?),
            Some(cache) => match cache.get(path, wanted) {
                Some(found) => found,
                None => {
                    let generation = cache.generation();
                    let found = Arc::new(self.fetch_version(path, wanted).await?);
                    cache.insert(generation, path, wanted, Arc::clone(&found));
                    found
                }
            },
        };
        let row = found
            .as_ref()
            .as_ref()
            .ok_or_else(|| StoreError::NotFound(Missing::Secret(path.to_owned())))?;
        let mut deleted_at = row.deleted_at;
        if let (Some(now), Some(_)) = (now, row.version)
            && expired(row.expires_at, now)
        {
            deleted_at = deleted_at.or(Some(now));
        }
        let (Some(found), None, Some(wrapped_key), Some(ciphertext)) =
            (row.version, deleted_at, &row.wrapped_key, &row.ciphertext)
        else {
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
                wrapped_key: wrapped_key.clone(),
                ciphertext: ciphertext.clone(),
            },
        })
    }

    /// The row of `path` at `wanted` (0: the current version) as stored; `None` if there is
    /// no such secret.
    async fn fetch_version(&self, path: &str, wanted: i64) -> Result<Found, StoreError> {
        // One statement, so the current version and its row are read from one snapshot.
        let row = sqlx::query(
            "SELECT v.version, v.expires_at, v.deleted_at, v.wrapped_key, v.ciphertext \
             FROM secrets s LEFT JOIN secret_versions v ON v.path = s.path \
             AND v.version = (CASE WHEN $2 = 0 THEN s.current_version ELSE $2 END) \
             WHERE s.path = $1",
        )
        .bind(path)
        .bind(wanted)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(VersionRow {
            version: row.try_get("version")?,
            expires_at: row.try_get("expires_at")?,
            deleted_at: row.try_get("deleted_at")?,
            wrapped_key: row.try_get("wrapped_key")?,
            ciphertext: row.try_get("ciphertext")?,
        }))
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
        let list = self.path_list().await?;
        Ok(list.paths()?.into_iter().map(Cow::into_owned).collect())
    }

    /// Every secret path, as [`list_paths`](Self::list_paths), in one JSON array the
    /// database builds: one row and one round trip. As rows, 100,000 paths cost 100,000
    /// row objects and strings made on sqlx's SQLite worker thread and freed on another,
    /// which took most of a full list's time and left the allocator holding tens of MiB.
    pub async fn path_list(&self) -> Result<PathList, StoreError> {
        // Both order by the column's collation: SQLite's BINARY, PostgreSQL's "C" (see
        // the migrations), so byte-wise on both. SQLite (3.44 and later, bundled) takes
        // ORDER BY inside an aggregate; PostgreSQL's json_agg of no rows is NULL.
        let sql = match self.backend {
            Backend::Sqlite => "SELECT json_group_array(path ORDER BY path) FROM secrets",
            Backend::Postgres => "SELECT json_agg(path ORDER BY path)::text FROM secrets",
        };
        let json: Option<String> = sqlx::query_scalar(sql).fetch_one(&self.pool).await?;
        Ok(PathList {
            json: json.unwrap_or_else(|| "[]".to_owned()),
        })
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

/// Every secret path, sorted, as the JSON array text the database built
/// ([`Store::path_list`]).
pub struct PathList {
    json: String,
}

/// One path of a [`PathList`], borrowed from its text unless it had to be unescaped.
#[derive(serde::Deserialize)]
struct ListedPath<'a>(#[serde(borrow)] Cow<'a, str>);

impl PathList {
    /// The paths, in order, borrowed from the list's text (valid paths need no escaping).
    pub fn paths(&self) -> Result<Vec<Cow<'_, str>>, StoreError> {
        let paths: Vec<ListedPath<'_>> = serde_json::from_str(&self.json).map_err(|e| {
            StoreError::Corrupt(Corruption::PathList {
                reason: e.to_string(),
            })
        })?;
        Ok(paths.into_iter().map(|ListedPath(path)| path).collect())
    }
}

/// The SQL of [`Store::put_version`], in the transaction it is given; an error leaves the
/// rolling back to the caller.
///
/// On SQLite a put is two query strings, each one round trip to sqlx's SQLite worker
/// thread: the claim (which also reads the fence), after the `BEGIN` its transaction owes
/// (see [`WriteTx`]), and [`FINISH_VERSION_SQLITE`], before its `COMMIT`. On PostgreSQL the
/// fence is read first, with its share lock, as for every sealed write, and the finishing
/// statements run one by one.
async fn put_version_in<F>(
    tx: &mut WriteTx<'_>,
    backend: Backend,
    put: PutVersion<'_>,
    seal: F,
) -> Result<u64, StoreError>
where
    F: FnOnce(u64) -> Result<SealedRecord, CryptoError>,
{
    let now = to_millis(put.now);
    if backend == Backend::Postgres {
        fence_holds(tx.conn().await?, backend, put.fence).await?;
    }
    let claim = claim_version(tx, &put, now).await?;
    if let Some(expected) = put.fence {
        fence_verdict(expected, claim.key_check.as_deref(), claim.sealed_at)?;
    }
    let version = claim.version;

    if put.cas.is_none() && (put.cas_required || claim.cas_required) {
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
    finish_version(
        tx,
        backend,
        &put,
        NewVersion {
            version,
            now,
            max_versions: claim.max_versions,
            delete_version_after: claim.delete_version_after,
        },
        sealed,
    )
    .await?;
    version_from_db(version, "secrets.latest_version")
}

/// The version a put or patch writes, and what decides which versions it prunes.
#[derive(Clone, Copy)]
struct NewVersion {
    /// Its number.
    version: i64,
    /// The time of the write (unix milliseconds).
    now: i64,
    /// The secret's `max_versions`: versions at or below `version - max_versions` go.
    max_versions: i64,
    /// The secret's `delete_version_after` (milliseconds, `0`: never), which fixes the new
    /// version's deletion time.
    delete_version_after: i64,
}

impl NewVersion {
    /// The new version's deletion time, fixed now from the secret's `delete_version_after`
    /// (`None`: it never expires), as Vault fixes a version's `deletion_time` when it is
    /// written.
    fn expires_at(self) -> Option<i64> {
        (self.delete_version_after > 0).then(|| self.now.saturating_add(self.delete_version_after))
    }
}

/// [`finish_version`] on SQLite: the three statements in one query string, which sqlx's
/// SQLite driver runs in turn in one round trip to its worker thread, binding `$N` in each
/// to the N-th argument ($1 path, $2 version, $3 now, $4 created_by, $5 wrapped key,
/// $6 ciphertext, $7 expires_at, $8 the highest version out of the `max_versions` window).
/// The statements are [`INSERT_VERSION`], [`PRUNE_VERSIONS`] and the summary of
/// `versions::refresh_summary`, in that order; PostgreSQL's extended protocol takes one
/// statement per query, so there they run one by one.
const FINISH_VERSION_SQLITE: &str = "\
    INSERT INTO secret_versions (path, version, created_at, deleted_at, created_by, \
    wrapped_key, ciphertext, expires_at) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7); \
    DELETE FROM secret_versions WHERE path = $1 \
    AND (version <= $8 OR (expires_at IS NOT NULL AND expires_at <= $3)); \
    UPDATE secrets SET \
    current_version = COALESCE((SELECT MAX(version) FROM secret_versions \
        WHERE path = $1 AND deleted_at IS NULL), 0), \
    oldest_version = COALESCE((SELECT MIN(version) FROM secret_versions \
        WHERE path = $1 AND deleted_at IS NULL), 0), \
    updated_at = $3 \
    WHERE path = $1";

/// Stores a new version (see [`NewVersion::expires_at`] for its deletion time).
const INSERT_VERSION: &str = "INSERT INTO secret_versions (path, version, created_at, \
    deleted_at, created_by, wrapped_key, ciphertext, expires_at) \
    VALUES ($1, $2, $3, NULL, $4, $5, $6, $7)";

/// Removes from storage the versions of $1 that fall out of the `max_versions` window
/// (numbers up to $2) and those whose deletion time has come at $3 (unreadable since).
const PRUNE_VERSIONS: &str = "DELETE FROM secret_versions WHERE path = $1 \
    AND (version <= $2 OR (expires_at IS NOT NULL AND expires_at <= $3))";

/// Writes the sealed new version of `put.path`, prunes the versions it pushes out of the
/// `max_versions` window and those past their deletion time (keeping the newest
/// `max_versions`: older ones leave storage, not just the listing), and recomputes the
/// secret's summary columns.
async fn finish_version(
    tx: &mut WriteTx<'_>,
    backend: Backend,
    put: &PutVersion<'_>,
    new: NewVersion,
    sealed: SealedRecord,
) -> Result<(), StoreError> {
    let prune_through = new.version - new.max_versions;
    match backend {
        Backend::Sqlite => {
            // The write's last statements: its `COMMIT` goes with them when it runs alone.
            let (sql, conn) = tx.last_statement(FINISH_VERSION_SQLITE);
            bind_version(sqlx::query(&sql), put, new, sealed)
                .bind(prune_through)
                .execute(conn)
                .await?;
        }
        Backend::Postgres => {
            let tx = tx.conn().await?;
            bind_version(sqlx::query(INSERT_VERSION), put, new, sealed)
                .execute(&mut *tx)
                .await?;
            sqlx::query(PRUNE_VERSIONS)
                .bind(put.path)
                .bind(prune_through)
                .bind(new.now)
                .execute(&mut *tx)
                .await?;
            refresh_summary(tx, put.path, new.now).await?;
        }
    }
    Ok(())
}

/// Binds the new version's row, $1 to $7 of [`INSERT_VERSION`] and of
/// [`FINISH_VERSION_SQLITE`], in that order.
fn bind_version<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    put: &PutVersion<'q>,
    new: NewVersion,
    sealed: SealedRecord,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(put.path)
        .bind(new.version)
        .bind(new.now)
        .bind(put.created_by)
        .bind(sealed.wrapped_key)
        .bind(sealed.ciphertext)
        .bind(new.expires_at())
}

/// What [`claim_version`] returns: the claimed number, the secret's settings, and the root
/// key row's fence columns.
struct Claim {
    version: i64,
    max_versions: i64,
    cas_required: bool,
    delete_version_after: i64,
    key_check: Option<Vec<u8>>,
    sealed_at: Option<i64>,
}

/// The statement of [`claim_version`]: $1 path, $2 `max_versions` of a new secret, $3 now,
/// $4 created_by.
const CLAIM_VERSION: &str = "INSERT INTO secrets (path, current_version, oldest_version, \
    latest_version, max_versions, created_at, updated_at, created_by) \
    VALUES ($1, 0, 0, 1, $2, $3, $3, $4) \
    ON CONFLICT (path) DO UPDATE SET latest_version = secrets.latest_version + 1 \
    RETURNING latest_version, max_versions, cas_required, delete_version_after, \
    (SELECT key_check FROM root_key WHERE id = 1) AS key_check, \
    (SELECT sealed_at FROM root_key WHERE id = 1) AS sealed_at";

/// Claims the next version number of `put.path`, creating the secret if needed, and
/// returns it with the secret's `max_versions`, `cas_required` and `delete_version_after`,
/// and the fence's columns of the root key row as they are in this transaction (for
/// [`fence_verdict`]: one statement fewer than [`fence_holds`]).
///
/// A single upsert: it inserts the row (as version 1) or increments `latest_version`, and
/// either way holds the row's write lock until the transaction ends. On PostgreSQL that
/// serialises concurrent puts to one path even under READ COMMITTED (a waiting upsert sees
/// the winner's committed row); on SQLite `BEGIN IMMEDIATE` has serialised them already.
async fn claim_version(
    tx: &mut WriteTx<'_>,
    put: &PutVersion<'_>,
    now: i64,
) -> Result<Claim, StoreError> {
    // The write's first statement: on SQLite what its transaction owes goes with it
    // (`BEGIN IMMEDIATE` when it runs alone).
    let (sql, conn) = tx.statement(CLAIM_VERSION);
    let row = sqlx::query(&sql)
        .bind(put.path)
        .bind(i64::from(put.max_versions.max(1)))
        .bind(now)
        .bind(put.created_by)
        .fetch_all(conn)
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)?;
    let version: i64 = row.try_get("latest_version")?;
    let max_versions: i64 = row.try_get("max_versions")?;
    let cas_required: i64 = row.try_get("cas_required")?;
    let delete_version_after: i64 = row.try_get("delete_version_after")?;
    if version < 1 || max_versions < 1 {
        return Err(StoreError::Corrupt(Corruption::Counters {
            path: put.path.to_owned(),
            latest: version,
            max: max_versions,
        }));
    }
    Ok(Claim {
        version,
        max_versions,
        cas_required: cas_required != 0,
        delete_version_after,
        key_check: row.try_get("key_check")?,
        sealed_at: row.try_get("sealed_at")?,
    })
}

/// Whether a version whose deletion time is `expires_at` (`None`: never) has expired at
/// `now` (milliseconds).
pub(super) fn expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// Removes from storage the versions of `path` whose deletion time has come (they have been
/// unreadable since) and returns their numbers. Versions not yet expired are never touched:
/// the condition is the deletion time stored with each version, checked in the statement
/// itself. With a `limit`, at most that many, lowest first: the periodic prune's bounded
/// step ([`Store::prune_expired`](super::Store::prune_expired)).
pub(super) async fn prune_expired(
    tx: &mut AnyConnection,
    path: &str,
    now: i64,
    limit: Option<i64>,
) -> Result<Vec<u64>, StoreError> {
    // Without a limit, no sub-select: the plain statement a metadata write runs.
    let query = match limit {
        None => sqlx::query(
            "DELETE FROM secret_versions WHERE path = $1 \
             AND expires_at IS NOT NULL AND expires_at <= $2 RETURNING version",
        )
        .bind(path)
        .bind(now),
        Some(limit) => sqlx::query(
            "DELETE FROM secret_versions WHERE path = $1 AND expires_at IS NOT NULL \
             AND expires_at <= $2 AND version IN (SELECT version FROM secret_versions \
             WHERE path = $1 AND expires_at IS NOT NULL AND expires_at <= $2 \
             ORDER BY version LIMIT $3) RETURNING version",
        )
        .bind(path)
        .bind(now)
        .bind(limit),
    };
    let rows = query.fetch_all(&mut *tx).await?;
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
