//! Policies (`policies`): the name is the plaintext key, the body is sealed by the caller.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::{SealedRecord, Store, StoreError, StoredPolicy, from_millis, to_millis};

impl Store {
    /// Creates or replaces the policy `name`. A replaced policy keeps its `created_at`.
    pub async fn put_policy(
        &self,
        name: &str,
        sealed: SealedRecord,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policies (name, wrapped_key, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET wrapped_key = excluded.wrapped_key, \
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(sealed.wrapped_key)
        .bind(sealed.ciphertext)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The policy `name`, if it exists.
    pub async fn get_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StoreError> {
        sqlx::query(
            "SELECT name, wrapped_key, ciphertext, created_at, updated_at \
             FROM policies WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(policy_from_row)
        .transpose()
    }

    /// Deletes the policy `name`; `false` if there was none.
    pub async fn delete_policy(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Every policy, sorted by name (byte-wise).
    pub async fn list_policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        sqlx::query(
            "SELECT name, wrapped_key, ciphertext, created_at, updated_at \
             FROM policies ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(policy_from_row)
        .collect()
    }
}

fn policy_from_row(row: &AnyRow) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        name: row.try_get("name")?,
        sealed: SealedRecord {
            wrapped_key: row.try_get("wrapped_key")?,
            ciphertext: row.try_get("ciphertext")?,
        },
        created_at: from_millis(row.try_get("created_at")?, "policies.created_at")?,
        updated_at: from_millis(row.try_get("updated_at")?, "policies.updated_at")?,
    })
}
