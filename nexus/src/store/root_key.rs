//! The root key's public record (`root_key`): a single row, written once.

use sqlx::Row;

use super::{KeyRecord, Store, StoreError, from_millis, to_millis};

impl Store {
    /// The stored key record, or `None` if the datastore was never initialised.
    pub async fn key_record(&self) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key_check, threshold, shares, created_at FROM root_key WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(KeyRecord {
            key_check: row.try_get("key_check")?,
            threshold: small(row.try_get("threshold")?, "threshold")?,
            shares: small(row.try_get("shares")?, "shares")?,
            created_at: from_millis(row.try_get("created_at")?, "root_key.created_at")?,
        }))
    }

    /// Stores `record` unless a record exists. Returns `true` if this call stored it,
    /// `false` if one already existed (left unchanged), so a datastore is never re-keyed.
    ///
    /// The row's key is fixed, so of concurrent callers, in any process, exactly one wins.
    pub async fn initialize(&self, record: &KeyRecord) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO root_key (id, key_check, threshold, shares, created_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(record.key_check.as_slice())
        .bind(i64::from(record.threshold))
        .bind(i64::from(record.shares))
        .bind(to_millis(record.created_at))
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}

fn small(value: i64, column: &str) -> Result<u8, StoreError> {
    u8::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("column root_key.{column} holds {value}")))
}
