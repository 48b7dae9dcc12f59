//! Single-use join tokens (`join_tokens`).

use sqlx::{Any, Transaction};

use super::entries::{column, insert_entry};
use super::{Datastore, DatastoreError, Entry, JoinToken, is_unique_violation};

impl Datastore {
    /// Stores a new join token. Fails with [`DatastoreError::AlreadyExists`] if a token with
    /// the same value exists.
    pub async fn create_join_token(&self, token: &JoinToken) -> Result<(), DatastoreError> {
        let mut tx = self.begin_write().await?;
        insert_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new join token and the entry that aliases its agent (`token generate
    /// -spiffeID`) in one transaction: both or neither. Errors as [`Datastore::create_entry`]
    /// and [`Datastore::create_join_token`].
    pub async fn create_join_token_with_alias(
        &self,
        token: &JoinToken,
        alias: &Entry,
    ) -> Result<Entry, DatastoreError> {
        let mut tx = self.begin_write().await?;
        let stored = match insert_entry(&mut tx, alias, self.clock.unix_seconds()).await {
            Ok(stored) => stored,
            Err(err) => {
                tx.rollback().await?;
                return Err(self.name_conflict(alias, err).await);
            }
        };
        insert_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Removes the token and returns it, or `None` if it does not exist (or was already
    /// consumed). A single `DELETE … RETURNING` statement, so of several concurrent callers
    /// exactly one gets the token. Expired tokens are returned too: the caller checks
    /// `expires_at`.
    pub async fn consume_join_token(
        &self,
        token: &str,
    ) -> Result<Option<JoinToken>, DatastoreError> {
        let row =
            sqlx::query("DELETE FROM join_tokens WHERE token = $1 RETURNING token, expires_at")
                .bind(token)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(JoinToken {
                token: column(&row, "token")?,
                expires_at: column(&row, "expires_at")?,
            })
        })
        .transpose()
    }

    /// Deletes every token that expired before `expired_before` (unix seconds, exclusive)
    /// and returns how many were deleted.
    pub async fn prune_join_tokens(&self, expired_before: i64) -> Result<u64, DatastoreError> {
        let result = sqlx::query("DELETE FROM join_tokens WHERE expires_at < $1")
            .bind(expired_before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}

/// Inserts `token` inside `tx`.
async fn insert_token(
    tx: &mut Transaction<'static, Any>,
    token: &JoinToken,
) -> Result<(), DatastoreError> {
    let inserted = sqlx::query("INSERT INTO join_tokens (token, expires_at) VALUES ($1, $2)")
        .bind(&token.token)
        .bind(token.expires_at)
        .execute(&mut **tx)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        // The token is a secret: do not echo it into error messages or logs.
        Err(err) if is_unique_violation(&err) => Err(DatastoreError::AlreadyExists(
            "a join token with this value exists".to_owned(),
        )),
        Err(err) => Err(err.into()),
    }
}
