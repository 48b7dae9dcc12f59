//! The keeper set on the root key's row (`spike operator rekey`): its generation, the URLs
//! a rekey chose and the claim of a rekey in progress.
//!
//! A rekey moves the datastore from generation `g` to `g + 1` in one transaction
//! ([`Store::commit_rekey`]), after every keeper of the new set holds its shard of `g + 1`
//! and before any keeper forgets `g`; so whichever side of that commit a crash lands on, the
//! generation stored here is one whose keepers hold their shards.

use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;

use super::{Backend, Corruption, Store, StoreError, from_millis, to_millis};

/// The keeper set the datastore names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeeperSet {
    /// 0 as first configured, one more after each rekey.
    pub generation: u64,
    /// The URLs a rekey chose, shard 1 first; `None`: the configured keepers.
    pub urls: Option<Vec<String>>,
    /// Shards needed.
    pub threshold: u8,
    /// Shards handed out (one per keeper).
    pub shares: u8,
    /// Key-check value of the root key the keepers hold shards of.
    pub key_check: Vec<u8>,
}

/// A rekey's claim, from [`Store::claim_rekey`] until its commit or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyClaim {
    /// The generation the rekey moves from.
    pub from: u64,
    started_at: i64,
}

/// What [`Store::claim_rekey`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This rekey may proceed.
    Claimed(RekeyClaim),
    /// Another rekey (on this replica or another) holds a fresh claim.
    Running {
        /// Its operator.
        by: String,
        /// Since when.
        since: OffsetDateTime,
    },
    /// The stored generation is not the one the caller moves from (a rekey through another
    /// replica committed meanwhile).
    Moved(u64),
    /// The datastore holds no root key.
    NeverInitialized,
}

/// What a rekey stores in its commit.
#[derive(Debug, Clone, Copy)]
pub struct RekeyCommit<'a> {
    /// Key-check value of the key the new keepers hold shards of; the commit is refused if
    /// the stored one differs (the key was rotated meanwhile).
    pub key_check: &'a [u8],
    /// The new set's URLs, shard 1 first.
    pub urls: &'a [String],
    /// The new threshold.
    pub threshold: u8,
    /// Also delete the rotation record: the new keepers hold the new key's shards, so no
    /// Nexus needs the previous key any more (a rekey with a new root key).
    pub finish_rotation: bool,
}

fn small(value: i64, column: &str) -> Result<u8, StoreError> {
    u8::try_from(value).map_err(|_| {
        StoreError::Corrupt(Corruption::OutOfRange {
            column: format!("root_key.{column}"),
            value,
        })
    })
}

impl Store {
    /// The keeper set the datastore names, `None` before the root key exists.
    pub async fn keeper_set(&self) -> Result<Option<StoredKeeperSet>, StoreError> {
        let row = sqlx::query(
            "SELECT keeper_generation, keeper_urls, threshold, shares, key_check \
             FROM root_key WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let generation: i64 = row.try_get("keeper_generation")?;
        let urls: Option<String> = row.try_get("keeper_urls")?;
        let urls = urls
            .map(|json| {
                serde_json::from_str::<Vec<String>>(&json).map_err(|_| {
                    StoreError::Corrupt(Corruption::OutOfRange {
                        column: "root_key.keeper_urls".into(),
                        value: 0,
                    })
                })
            })
            .transpose()?;
        Ok(Some(StoredKeeperSet {
            generation: u64::try_from(generation).map_err(|_| {
                StoreError::Corrupt(Corruption::Negative {
                    column: "root_key.keeper_generation".into(),
                    value: generation,
                })
            })?,
            urls,
            threshold: small(row.try_get("threshold")?, "threshold")?,
            shares: small(row.try_get("shares")?, "shares")?,
            key_check: row.try_get("key_check")?,
        }))
    }

    /// Claims the rekey from generation `from` for `by` at `now`: refused while another
    /// rekey's claim is younger than `stale_after` (an older one belonged to a Nexus that
    /// died mid-rekey, and is taken over).
    pub async fn claim_rekey(
        &self,
        from: u64,
        by: &str,
        now: OffsetDateTime,
        stale_after: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT keeper_generation, rekey_started_at, rekey_by FROM root_key WHERE id = 1{}",
            match self.backend {
                Backend::Postgres => " FOR UPDATE",
                Backend::Sqlite => "",
            }
        ))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(ClaimOutcome::NeverInitialized);
        };
        let generation: i64 = row.try_get("keeper_generation")?;
        if u64::try_from(generation).ok() != Some(from) {
            tx.rollback().await?;
            return Ok(ClaimOutcome::Moved(
                u64::try_from(generation).unwrap_or_default(),
            ));
        }
        let started: Option<i64> = row.try_get("rekey_started_at")?;
        let now_ms = to_millis(now);
        let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        if let Some(started) = started
            && now_ms.saturating_sub(started) < stale_ms
        {
            let by: Option<String> = row.try_get("rekey_by")?;
            tx.rollback().await?;
            return Ok(ClaimOutcome::Running {
                by: by.unwrap_or_default(),
                since: from_millis(started, "root_key.rekey_started_at")?,
            });
        }
        sqlx::query("UPDATE root_key SET rekey_started_at = $1, rekey_by = $2 WHERE id = 1")
            .bind(now_ms)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed(RekeyClaim {
            from,
            started_at: now_ms,
        }))
    }

    /// The rekey's commit, in one transaction: the next generation, its URLs and threshold
    /// become the keeper set, and the claim is cleared. Returns `false`, storing nothing,
    /// unless the claim still holds, the generation is still `claim.from`, the stored
    /// key-check value is `commit.key_check` and no operator sealed Nexus.
    pub async fn commit_rekey(
        &self,
        claim: &RekeyClaim,
        commit: &RekeyCommit<'_>,
    ) -> Result<bool, StoreError> {
        let from = i64::try_from(claim.from).map_err(|_| {
            StoreError::Corrupt(Corruption::OutOfRange {
                column: "root_key.keeper_generation".into(),
                value: i64::MAX,
            })
        })?;
        let urls = serde_json::to_string(commit.urls).map_err(|_| {
            StoreError::Corrupt(Corruption::OutOfRange {
                column: "root_key.keeper_urls".into(),
                value: 0,
            })
        })?;
        let shares = i64::try_from(commit.urls.len()).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE root_key SET keeper_generation = keeper_generation + 1, keeper_urls = $1, \
             threshold = $2, shares = $3, rekey_started_at = NULL, rekey_by = NULL \
             WHERE id = 1 AND keeper_generation = $4 AND rekey_started_at = $5 \
             AND key_check = $6 AND sealed_at IS NULL",
        )
        .bind(urls)
        .bind(i64::from(commit.threshold))
        .bind(shares)
        .bind(from)
        .bind(claim.started_at)
        .bind(commit.key_check)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if commit.finish_rotation {
            sqlx::query("DELETE FROM root_key_rotation")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Gives up the claim (the rekey failed before its commit); the keeper set stays.
    pub async fn release_rekey(&self, claim: &RekeyClaim) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE root_key SET rekey_started_at = NULL, rekey_by = NULL \
             WHERE id = 1 AND rekey_started_at = $1",
        )
        .bind(claim.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Clears any rekey claim: for a Nexus starting on SQLite, the file's only writer, whose
    /// claim can only be left over from a rekey that died with its process.
    pub async fn clear_rekey_claim(&self) -> Result<bool, StoreError> {
        let cleared = sqlx::query(
            "UPDATE root_key SET rekey_started_at = NULL, rekey_by = NULL \
             WHERE id = 1 AND rekey_started_at IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(cleared > 0)
    }
}
