//! The operator seal (`spike operator seal`) on the root key's row: who sealed Nexus and
//! when. While it is set no Nexus on this datastore unseals from its keepers, a restarted
//! one included, and every sealed write is refused by the write fence
//! ([`Store::check_fence`]). On PostgreSQL each change is announced to every replica on
//! [`POLICY_CHANNEL`] with the payload [`SEAL_NOTICE`], sent as the change commits.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;

use super::{Backend, POLICY_CHANNEL, Store, StoreError, from_millis, to_millis};

/// The payload announcing a change of the operator seal (policy generations are numbers,
/// pings `ping`).
pub const SEAL_NOTICE: &str = "seal";

/// A stored operator seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSeal {
    /// The SPIFFE ID of the operator who sealed.
    pub by: String,
    /// When (stored at millisecond precision).
    pub at: OffsetDateTime,
}

/// What [`Store::seal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealOutcome {
    /// The seal is stored.
    Sealed,
    /// A seal was stored already (by this Nexus or another replica); it is left as it was.
    AlreadySealed(StoredSeal),
    /// The datastore holds no root key: there is nothing to seal.
    NeverInitialized,
}

impl Store {
    /// The stored operator seal, if Nexus is sealed by an operator.
    pub async fn operator_seal(&self) -> Result<Option<StoredSeal>, StoreError> {
        let row = sqlx::query(SEAL_QUERY).fetch_optional(&self.pool).await?;
        row.as_ref()
            .map(seal_from_row)
            .transpose()
            .map(Option::flatten)
    }

    /// Stores an operator seal by `by` at `at`, unless one is stored; announces it to every
    /// replica.
    pub async fn seal(&self, by: &str, at: OffsetDateTime) -> Result<SealOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        // On PostgreSQL the row lock waits for writers holding the fence's share lock, and
        // the writers after it see the seal: no sealed write commits after the seal, on any
        // replica.
        let row = sqlx::query(&format!("{SEAL_QUERY}{}", self.row_lock()))
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match row.as_ref().map(seal_from_row).transpose()? {
            None => SealOutcome::NeverInitialized,
            Some(Some(existing)) => SealOutcome::AlreadySealed(existing),
            Some(None) => SealOutcome::Sealed,
        };
        if outcome != SealOutcome::Sealed {
            tx.rollback().await?;
            return Ok(outcome);
        }
        sqlx::query("UPDATE root_key SET sealed_by = $1, sealed_at = $2 WHERE id = 1")
            .bind(by)
            .bind(to_millis(at))
            .execute(&mut *tx)
            .await?;
        self.announce_seal(&mut tx).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Clears the operator seal; returns the seal it cleared (`None`: there was none, and
    /// nothing changed). Announces the change to every replica.
    pub async fn unseal(&self) -> Result<Option<StoredSeal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!("{SEAL_QUERY}{}", self.row_lock()))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(lifted) = row.as_ref().map(seal_from_row).transpose()?.flatten() else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("UPDATE root_key SET sealed_by = NULL, sealed_at = NULL WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        self.announce_seal(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(lifted))
    }

    /// Locks the row read (PostgreSQL; SQLite's write transaction holds the whole file).
    fn row_lock(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// PostgreSQL: tells every replica, when `tx` commits, that the seal changed.
    async fn announce_seal(&self, tx: &mut AnyConnection) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            // Selected through FROM: pg_notify returns `void`, which the Any driver cannot
            // decode.
            sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)")
                .bind(POLICY_CHANNEL)
                .bind(SEAL_NOTICE)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

const SEAL_QUERY: &str = "SELECT sealed_by, sealed_at FROM root_key WHERE id = 1";

/// The seal of a root key row: `None` if not sealed.
fn seal_from_row(row: &AnyRow) -> Result<Option<StoredSeal>, StoreError> {
    let by: Option<String> = row.try_get("sealed_by")?;
    let at: Option<i64> = row.try_get("sealed_at")?;
    match (by, at) {
        (Some(by), Some(at)) => Ok(Some(StoredSeal {
            by,
            at: from_millis(at, "root_key.sealed_at")?,
        })),
        _ => Ok(None),
    }
}
