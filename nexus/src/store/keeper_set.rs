//! The keeper set on the root key's row (`spike operator rekey`): its generation, the URLs
//! a rekey chose and the claim of a rekey in progress.
//!
//! A rekey moves the datastore from generation `g` to `g + 1` in one transaction
//! ([`Store::commit_rekey`]), after every keeper of the new set holds its shard of `g + 1`
//! and before any keeper forgets `g`; so whichever side of that commit a crash lands on, the
//! generation stored here is one whose keepers hold their shards.
//!
//! # The claim, and a claim whose Nexus died
//!
//! One rekey at a time, across replicas: a rekey claims the row (`rekey_started_at`,
//! `rekey_by`) before it stages anything. On PostgreSQL the claim is also a lease: a
//! session-level advisory lock held by a connection of its own, kept open by the rekeying
//! Nexus until its commit or release, and with TCP keepalives asked of the server so that a
//! vanished host is noticed within seconds. While that lock is held the claim is live,
//! however long the rekey takes; once it is free (the Nexus died, its process's sockets
//! closed, or its host vanished and the keepalives ran out) a claim left in the row is stale
//! and the next rekey takes it over at once, instead of after a fixed timeout. The commit
//! runs on the lease's connection: a Nexus whose lease was lost (its connection cut) cannot
//! commit, so it can never commit over a rekey that took its claim over.
//!
//! On SQLite the file has one writer process, which clears any claim when it starts (a claim
//! can only outlive the process that made it); a claim older than the caller's
//! `stale_after` is taken over as well.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Row};
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

/// The PostgreSQL advisory lock of a live rekey claim ("nexrekey" in ASCII; see
/// `root_key::INIT_LOCK` for the other key Nexus uses).
const REKEY_LOCK: i64 = 0x6e65_7872_656b_6579;

/// The connection holding [`REKEY_LOCK`] for a claim (PostgreSQL); `None` once the claim
/// committed or was released (the connection closed, the lock with it).
type Lease = Arc<tokio::sync::Mutex<Option<AnyConnection>>>;

/// A rekey's claim, from [`Store::claim_rekey`] until its commit or release. Dropping it
/// without either (as the death of its Nexus does) frees its lease on PostgreSQL: the claim
/// left in the row is then stale and taken over by the next rekey.
pub struct RekeyClaim {
    /// The generation the rekey moves from.
    pub from: u64,
    started_at: i64,
    lease: Option<Lease>,
}

impl std::fmt::Debug for RekeyClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyClaim")
            .field("from", &self.from)
            .field("started_at", &self.started_at)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}

/// What [`Store::claim_rekey`] found.
#[derive(Debug)]
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
    /// rekey's claim is live. On PostgreSQL a claim is live while its holder's lease is (see
    /// the module docs), whatever its age; on SQLite while it is younger than `stale_after`.
    /// A claim that is not live belonged to a Nexus that died mid-rekey, and is taken over.
    pub async fn claim_rekey(
        &self,
        from: u64,
        by: &str,
        now: OffsetDateTime,
        stale_after: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        match self.backend {
            Backend::Sqlite => self.claim_rekey_sqlite(from, by, now, stale_after).await,
            Backend::Postgres => self.claim_rekey_postgres(from, by, now).await,
        }
    }

    async fn claim_rekey_postgres(
        &self,
        from: u64,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<ClaimOutcome, StoreError> {
        // A connection of the claim's own, out of the pool: closing it (when the claim ends,
        // or with the process) releases the session lock.
        let mut lease = self.pool.acquire().await?.detach();
        // A host that vanishes without closing its sockets is noticed by the server within
        // about 5 + 3 * 2 seconds, and its lock released.
        for setting in [
            "SET tcp_keepalives_idle = 5",
            "SET tcp_keepalives_interval = 2",
            "SET tcp_keepalives_count = 3",
        ] {
            sqlx::query(setting).execute(&mut lease).await?;
        }
        let locked: i64 = sqlx::query(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END::BIGINT AS locked",
        )
        .bind(REKEY_LOCK)
        .fetch_one(&mut lease)
        .await?
        .try_get("locked")?;
        if locked == 0 {
            // Another Nexus holds a live claim (or has just committed one).
            let row = sqlx::query(
                "SELECT keeper_generation, rekey_started_at, rekey_by FROM root_key WHERE id = 1",
            )
            .fetch_optional(&mut lease)
            .await?;
            let _ = lease.close().await;
            let Some(row) = row else {
                return Ok(ClaimOutcome::NeverInitialized);
            };
            let generation: i64 = row.try_get("keeper_generation")?;
            if u64::try_from(generation).ok() != Some(from) {
                return Ok(ClaimOutcome::Moved(
                    u64::try_from(generation).unwrap_or_default(),
                ));
            }
            let started: Option<i64> = row.try_get("rekey_started_at")?;
            let by: Option<String> = row.try_get("rekey_by")?;
            return Ok(ClaimOutcome::Running {
                by: by.unwrap_or_default(),
                since: from_millis(
                    started.unwrap_or_else(|| to_millis(now)),
                    "root_key.rekey_started_at",
                )?,
            });
        }
        // The lease is ours: any claim in the row is stale (its holder holds no lease).
        let outcome = claim_row(&mut lease, from, by, now, Backend::Postgres, None).await?;
        Ok(match outcome {
            ClaimOutcome::Claimed(claim) => ClaimOutcome::Claimed(RekeyClaim {
                lease: Some(Arc::new(tokio::sync::Mutex::new(Some(lease)))),
                ..claim
            }),
            other => {
                let _ = lease.close().await;
                other
            }
        })
    }

    async fn claim_rekey_sqlite(
        &self,
        from: u64,
        by: &str,
        now: OffsetDateTime,
        stale_after: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut conn = self.pool.acquire().await?;
        claim_row(&mut conn, from, by, now, Backend::Sqlite, Some(stale_after)).await
    }
}

/// Frees a claim's lease (PostgreSQL) and closes its connection. The lock is unlocked
/// first, on the connection: closing alone frees it only once the server has ended the
/// session, a moment after the client hangs up, and a rekey claimed in that moment would
/// be told that this one still runs. If the unlock fails (the connection was cut), the
/// server frees the lock with the session anyway.
async fn end_lease(mut conn: AnyConnection) {
    if let Err(error) = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REKEY_LOCK)
        .execute(&mut conn)
        .await
    {
        tracing::debug!(%error, "unlocking a rekey lease failed; closing its session frees it");
    }
    let _ = conn.close().await;
}

/// Claims the row on `conn` in one write transaction: refused if the generation is not
/// `from`, or (with `stale_after`) while the claim in the row is younger than that.
async fn claim_row(
    conn: &mut AnyConnection,
    from: u64,
    by: &str,
    now: OffsetDateTime,
    backend: Backend,
    stale_after: Option<Duration>,
) -> Result<ClaimOutcome, StoreError> {
    {
        let mut tx = match backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let row = sqlx::query(&format!(
            "SELECT keeper_generation, rekey_started_at, rekey_by FROM root_key WHERE id = 1{}",
            match backend {
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
        if let (Some(started), Some(stale_after)) = (started, stale_after) {
            let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(started) < stale_ms {
                let by: Option<String> = row.try_get("rekey_by")?;
                tx.rollback().await?;
                return Ok(ClaimOutcome::Running {
                    by: by.unwrap_or_default(),
                    since: from_millis(started, "root_key.rekey_started_at")?,
                });
            }
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
            lease: None,
        }))
    }
}

impl Store {
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
        let Some(lease) = &claim.lease else {
            let mut tx = self.begin_write().await?;
            let committed = commit_in(&mut tx, claim, commit, from, &urls, shares).await?;
            if committed {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            return Ok(committed);
        };
        // On the lease's connection: if it was cut, the lease may have been taken over, and
        // this fails instead of committing (see the module docs).
        let mut held = lease.lock().await;
        let Some(conn) = held.as_mut() else {
            // Committed or released already.
            return Ok(false);
        };
        let mut tx = conn.begin().await?;
        let committed = commit_in(&mut tx, claim, commit, from, &urls, shares).await?;
        if !committed {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        // The claim is done: the lease is freed.
        if let Some(conn) = held.take() {
            end_lease(conn).await;
        }
        Ok(true)
    }

    /// Whether `claim` still holds its lease (PostgreSQL: its connection answers; SQLite: no
    /// lease, always `true`). Asked before a failed rekey forgets what it staged, so that a
    /// rekey whose lease was lost, and may have been taken over, leaves the keepers alone.
    pub async fn rekey_claim_live(&self, claim: &RekeyClaim) -> bool {
        let Some(lease) = &claim.lease else {
            return true;
        };
        let mut held = lease.lock().await;
        match held.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        }
    }

    /// Gives up the claim (the rekey failed before its commit); the keeper set stays, and
    /// the lease (PostgreSQL) is freed.
    pub async fn release_rekey(&self, claim: &RekeyClaim) -> Result<(), StoreError> {
        let release = sqlx::query(
            "UPDATE root_key SET rekey_started_at = NULL, rekey_by = NULL \
             WHERE id = 1 AND rekey_started_at = $1",
        )
        .bind(claim.started_at);
        let held = match &claim.lease {
            Some(lease) => lease.lock().await.take(),
            None => None,
        };
        match held {
            // Cleared before the lease is freed, so no other rekey sees it in between.
            Some(mut conn) => {
                let cleared = release.execute(&mut conn).await;
                end_lease(conn).await;
                cleared?;
            }
            None => {
                release.execute(&self.pool).await?;
            }
        }
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

/// The commit's statements in `tx`; `false` if the claim, generation, key or seal no longer
/// allow it (nothing stored).
async fn commit_in(
    tx: &mut sqlx::AnyConnection,
    claim: &RekeyClaim,
    commit: &RekeyCommit<'_>,
    from: i64,
    urls: &str,
    shares: i64,
) -> Result<bool, StoreError> {
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
        return Ok(false);
    }
    if commit.finish_rotation {
        sqlx::query("DELETE FROM root_key_rotation")
            .execute(&mut *tx)
            .await?;
    }
    Ok(true)
}
