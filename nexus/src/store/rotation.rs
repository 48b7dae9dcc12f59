//! Root key rotation in the datastore: every wrapped data key re-wrapped and the key-check
//! value replaced in one transaction, with a record that lets a Nexus still holding only the
//! previous key (its keepers not yet re-seeded) recover the new one.

use sqlx::Row;

use super::{Backend, Store, StoreError, to_millis};

/// An unfinished rotation (`root_key_rotation`): present from the rotation's commit until
/// every keeper holds a shard of the new key.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationRecord {
    /// Key-check value of the previous root key.
    pub previous_key_check: Vec<u8>,
    /// The new root key, sealed under the previous key's KEK.
    pub sealed_key: Vec<u8>,
}

impl std::fmt::Debug for RotationRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationRecord").finish_non_exhaustive()
    }
}

/// A sealed record's wrapped data key, as the rotation sees it.
#[derive(Debug)]
pub struct WrappedRow<'a> {
    /// `secret_versions`, `policies` or `cipher_key` (the sealing AAD's table).
    pub table: &'static str,
    /// Secret path or policy name.
    pub key: &'a str,
    /// Secret version (0 for policies).
    pub version: u64,
    /// The data key wrapped under the current root key.
    pub wrapped_key: &'a [u8],
}

/// Why a rotation stored nothing; `E` is the re-wrap function's error.
#[derive(Debug, thiserror::Error)]
pub enum RotateError<E> {
    /// The datastore failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored key-check value is not the caller's: another Nexus rotated meanwhile.
    #[error("the root key changed meanwhile (another rotation?); nothing was rotated")]
    KeyChanged,
    /// The re-wrap function refused a row; its error.
    #[error("{0}")]
    Rewrap(E),
}

impl<E> From<sqlx::Error> for RotateError<E> {
    fn from(error: sqlx::Error) -> Self {
        RotateError::Store(error.into())
    }
}

impl Store {
    /// In one transaction: checks that the stored key-check value is `current_check`,
    /// re-wraps every secret version's and policy's data key with `rewrap`, stores
    /// `new_check` and `record` (started at `now`). Returns how many data keys were
    /// re-wrapped. On any error nothing changes.
    pub async fn rotate_root_key<F, E>(
        &self,
        current_check: &[u8],
        new_check: &[u8],
        record: &RotationRecord,
        now: time::OffsetDateTime,
        rewrap: F,
    ) -> Result<u64, RotateError<E>>
    where
        F: Fn(&WrappedRow<'_>) -> Result<Vec<u8>, E> + Send + Sync,
        E: Send,
    {
        let mut tx = self.begin_write().await?;
        let lock = match self.backend() {
            // Writers and other rotations on other replicas wait on this row.
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let stored: Vec<u8> = sqlx::query(&format!(
            "SELECT key_check FROM root_key WHERE id = 1{lock}"
        ))
        .fetch_one(&mut *tx)
        .await?
        .try_get("key_check")?;
        if stored != current_check {
            tx.rollback().await?;
            return Err(RotateError::KeyChanged);
        }
        let mut count = 0u64;
        let versions = sqlx::query("SELECT path, version, wrapped_key FROM secret_versions")
            .fetch_all(&mut *tx)
            .await?;
        for row in &versions {
            let path: String = row.try_get("path")?;
            let version: i64 = row.try_get("version")?;
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            let rewrapped = rewrap(&WrappedRow {
                table: crate::keys::sealing::SECRETS_TABLE,
                key: &path,
                version: u64::try_from(version).map_err(|_| {
                    StoreError::Corrupt(super::Corruption::Version {
                        path: path.clone(),
                        version,
                    })
                })?,
                wrapped_key: &wrapped,
            })
            .map_err(RotateError::Rewrap)?;
            sqlx::query(
                "UPDATE secret_versions SET wrapped_key = $1 WHERE path = $2 AND version = $3",
            )
            .bind(rewrapped)
            .bind(&path)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            count += 1;
        }
        let policies = sqlx::query("SELECT name, wrapped_key FROM policies")
            .fetch_all(&mut *tx)
            .await?;
        for row in &policies {
            let name: String = row.try_get("name")?;
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            let rewrapped = rewrap(&WrappedRow {
                table: crate::keys::sealing::POLICIES_TABLE,
                key: &name,
                version: 0,
                wrapped_key: &wrapped,
            })
            .map_err(RotateError::Rewrap)?;
            sqlx::query("UPDATE policies SET wrapped_key = $1 WHERE name = $2")
                .bind(rewrapped)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let cipher = sqlx::query("SELECT wrapped_key FROM cipher_key WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = cipher {
            let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
            let rewrapped = rewrap(&WrappedRow {
                table: crate::keys::sealing::CIPHER_TABLE,
                key: "",
                version: 0,
                wrapped_key: &wrapped,
            })
            .map_err(RotateError::Rewrap)?;
            sqlx::query("UPDATE cipher_key SET wrapped_key = $1 WHERE id = 1")
                .bind(rewrapped)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        sqlx::query("UPDATE root_key SET key_check = $1 WHERE id = 1")
            .bind(new_check)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM root_key_rotation")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO root_key_rotation (id, previous_key_check, sealed_key, started_at) \
             VALUES (1, $1, $2, $3)",
        )
        .bind(&record.previous_key_check)
        .bind(&record.sealed_key)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(count)
    }

    /// The unfinished rotation, if any.
    pub async fn rotation(&self) -> Result<Option<RotationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT previous_key_check, sealed_key FROM root_key_rotation WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(RotationRecord {
                previous_key_check: row.try_get("previous_key_check")?,
                sealed_key: row.try_get("sealed_key")?,
            })
        })
        .transpose()
    }

    /// The cipher service's wrapped key, if created.
    pub async fn cipher_key(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT wrapped_key FROM cipher_key WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("wrapped_key")).transpose()?)
    }

    /// Stores the cipher service's wrapped key unless one exists (another replica may have
    /// created it first), dated `now`; returns the one stored. Fenced with `fence` like
    /// every sealed write.
    pub async fn create_cipher_key(
        &self,
        wrapped_key: &[u8],
        now: time::OffsetDateTime,
        fence: Option<&[u8]>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.begin_write().await?;
        self.check_fence(&mut tx, fence).await?;
        sqlx::query(
            "INSERT INTO cipher_key (id, wrapped_key, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(wrapped_key)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        let stored: Vec<u8> = sqlx::query("SELECT wrapped_key FROM cipher_key WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("wrapped_key")?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Forgets the rotation record once every keeper holds a shard of the new key (so the
    /// new key is no longer recoverable from the previous one), provided the stored key-check
    /// value is still `key_check`, the key the keepers were given: a rotation committed
    /// meanwhile keeps its record until the keepers hold its own key. Returns whether a
    /// record was deleted.
    pub async fn finish_rotation(&self, key_check: &[u8]) -> Result<bool, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM root_key_rotation \
             WHERE EXISTS (SELECT 1 FROM root_key WHERE id = 1 AND key_check = $1)",
        )
        .bind(key_check)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted > 0)
    }
}
