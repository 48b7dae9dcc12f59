//! Policies (`policies`): the name is the plaintext key, the body is sealed by the caller.
//!
//! Every change also increments the policy generation (`policy_generation`) in the same
//! transaction, and returns the new value: a Nexus whose cache was loaded at that generation
//! or later has seen the change. On PostgreSQL a trigger (migration 0002) announces each
//! new generation to every replica on the `nexus_policies` channel.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{
    Backend, SealedRecord, Store, StoreError, StoredPolicy, from_millis, to_millis, version_from_db,
};

/// The PostgreSQL notification channel on which each new policy generation is announced,
/// by the trigger of migration `0002_policy_generation.sql` (keep the two in step).
pub const POLICY_CHANNEL: &str = "nexus_policies";

impl Store {
    /// Creates or replaces the policy `name`. A replaced policy keeps its `created_at`.
    /// Returns the policy generation this change created. Fenced with `fence`, the
    /// key-check value of the root key `sealed` is sealed under (see [`super::PutVersion::fence`]).
    pub async fn put_policy(
        &self,
        name: &str,
        sealed: SealedRecord,
        now: OffsetDateTime,
        fence: Option<&[u8]>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        self.check_fence(&mut tx, fence).await?;
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
        .execute(&mut *tx)
        .await?;
        let generation = next_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(generation)
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

    /// Deletes the policy `name`; returns the policy generation this change created, or
    /// `None` (and changes nothing) if there was no such policy.
    pub async fn delete_policy(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let generation = next_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(generation))
    }

    /// The current policy generation: how many policy changes were ever committed.
    pub async fn policy_generation(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT generation FROM policy_generation WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(missing_generation)?;
        version_from_db(row.try_get("generation")?, "policy_generation.generation")
    }

    /// PostgreSQL: sends `payload` to every Nexus listening on [`POLICY_CHANNEL`] (a
    /// liveness ping; generations are announced by the trigger). SQLite: nothing to do.
    pub async fn notify_policy_listeners(&self, payload: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // Selected through FROM: pg_notify returns `void`, which the Any driver cannot
        // decode.
        sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)")
            .bind(POLICY_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every policy, sorted by name, with the policy generation they are: one statement, so
    /// one snapshot on either database, and the set is exactly that generation (a change
    /// moves the generation in the transaction that makes it).
    pub async fn policies_at_generation(&self) -> Result<(u64, Vec<StoredPolicy>), StoreError> {
        let rows = sqlx::query(
            "SELECT g.generation, p.name, p.wrapped_key, p.ciphertext, p.created_at, \
             p.updated_at FROM policy_generation g LEFT JOIN policies p ON TRUE \
             WHERE g.id = 1 ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let first = rows.first().ok_or_else(missing_generation)?;
        let generation =
            version_from_db(first.try_get("generation")?, "policy_generation.generation")?;
        let mut policies = Vec::with_capacity(rows.len());
        for row in &rows {
            // No policy at all: the one row has the generation and NULLs.
            if row.try_get::<Option<String>, _>("name")?.is_some() {
                policies.push(policy_from_row(row)?);
            }
        }
        Ok((generation, policies))
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

/// Increments the policy generation inside `tx` and returns the new value. The row lock it
/// takes also orders concurrent policy changes: generations follow commit order.
async fn next_generation(tx: &mut AnyConnection) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "UPDATE policy_generation SET generation = generation + 1 WHERE id = 1 \
         RETURNING generation",
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(missing_generation)?;
    version_from_db(row.try_get("generation")?, "policy_generation.generation")
}

fn missing_generation() -> StoreError {
    StoreError::Corrupt(super::Corruption::NoGeneration)
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
