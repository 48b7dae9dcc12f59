//! Attested agents (`attested_agents`).

use sqlx::any::AnyRow;

use super::entries::column;
use super::{
    AttestedAgent, Datastore, DatastoreError, Selector, bool_from_db, bool_to_db, from_json,
    to_json,
};

const SELECT_AGENTS: &str = "SELECT spiffe_id, attestation_type, serial_number, expires_at, \
     new_serial_number, new_expires_at, selectors, can_reattest, banned FROM attested_agents";

impl Datastore {
    /// Inserts the agent, or replaces every field of the agent with the same SPIFFE ID.
    pub async fn upsert_attested_agent(&self, agent: &AttestedAgent) -> Result<(), DatastoreError> {
        sqlx::query(
            "INSERT INTO attested_agents (spiffe_id, attestation_type, serial_number, \
             expires_at, new_serial_number, new_expires_at, selectors, can_reattest, banned) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (spiffe_id) DO UPDATE SET \
             attestation_type = excluded.attestation_type, \
             serial_number = excluded.serial_number, expires_at = excluded.expires_at, \
             new_serial_number = excluded.new_serial_number, \
             new_expires_at = excluded.new_expires_at, \
             selectors = excluded.selectors, can_reattest = excluded.can_reattest, \
             banned = excluded.banned",
        )
        .bind(&agent.spiffe_id)
        .bind(&agent.attestation_type)
        .bind(&agent.serial_number)
        .bind(agent.expires_at)
        .bind(&agent.new_serial_number)
        .bind(agent.new_expires_at)
        .bind(selectors_to_json(&agent.selectors)?)
        .bind(bool_to_db(agent.can_reattest))
        .bind(bool_to_db(agent.banned))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The agent with this SPIFFE ID, if it has attested.
    pub async fn get_attested_agent(
        &self,
        spiffe_id: &str,
    ) -> Result<Option<AttestedAgent>, DatastoreError> {
        let sql = format!("{SELECT_AGENTS} WHERE spiffe_id = $1");
        let row = sqlx::query(&sql)
            .bind(spiffe_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Records an SVID just issued to the agent by a renewal as its pending ("new") SVID; the
    /// current one stays valid until the agent first calls with the new one (see
    /// [`Datastore::activate_agent_svid`]). A later renewal replaces a pending SVID that was
    /// never used. Fails with [`DatastoreError::NotFound`] if the agent does not exist.
    pub async fn set_agent_new_svid(
        &self,
        spiffe_id: &str,
        serial_number: &str,
        expires_at: i64,
    ) -> Result<(), DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_agents SET new_serial_number = $2, new_expires_at = $3 \
             WHERE spiffe_id = $1",
        )
        .bind(spiffe_id)
        .bind(serial_number)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(DatastoreError::NotFound(format!(
                "attested agent {spiffe_id:?}"
            )));
        }
        Ok(())
    }

    /// Makes the agent's pending SVID current, if its serial number is `serial_number`: the
    /// SVID it replaces is no longer accepted. Returns whether it did; `false` when the
    /// agent is gone or its pending serial is another (for example because a concurrent
    /// call activated it first). The check and the update are one statement, so two
    /// concurrent activations cannot interleave with a renewal.
    pub async fn activate_agent_svid(
        &self,
        spiffe_id: &str,
        serial_number: &str,
    ) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_agents SET serial_number = new_serial_number, \
             expires_at = new_expires_at, new_serial_number = '', new_expires_at = 0 \
             WHERE spiffe_id = $1 AND new_serial_number = $2 AND new_serial_number <> ''",
        )
        .bind(spiffe_id)
        .bind(serial_number)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes the agent; returns whether it existed.
    pub async fn delete_attested_agent(&self, spiffe_id: &str) -> Result<bool, DatastoreError> {
        let result = sqlx::query("DELETE FROM attested_agents WHERE spiffe_id = $1")
            .bind(spiffe_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Bans the agent: marks it banned and forgets its SVID serials, so neither its current
    /// SVID nor a new attestation is accepted until it is deleted (evicted). Returns whether
    /// it existed.
    pub async fn ban_attested_agent(&self, spiffe_id: &str) -> Result<bool, DatastoreError> {
        let result = sqlx::query(
            "UPDATE attested_agents SET banned = 1, serial_number = '', \
             new_serial_number = '', new_expires_at = 0 WHERE spiffe_id = $1",
        )
        .bind(spiffe_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The number of attested agents.
    pub async fn count_attested_agents(&self) -> Result<i64, DatastoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM attested_agents")
            .fetch_one(&self.pool)
            .await?;
        column(&row, "n")
    }

    /// Deletes the agents, banned ones excepted, whose SVID (and pending SVID) expired before
    /// `expired_before`, and returns them. With `dry_run` nothing is deleted. Each delete
    /// re-checks the expiry, so an agent renewed meanwhile stays.
    pub async fn purge_expired_agents(
        &self,
        expired_before: i64,
        dry_run: bool,
    ) -> Result<Vec<AttestedAgent>, DatastoreError> {
        let sql = format!(
            "{SELECT_AGENTS} WHERE banned = 0 AND expires_at < $1 AND new_expires_at < $1 \
             ORDER BY spiffe_id"
        );
        let rows = sqlx::query(&sql)
            .bind(expired_before)
            .fetch_all(&self.pool)
            .await?;
        let expired = rows
            .iter()
            .map(agent_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if dry_run {
            return Ok(expired);
        }
        let mut purged = Vec::with_capacity(expired.len());
        for agent in expired {
            let deleted = sqlx::query(
                "DELETE FROM attested_agents WHERE spiffe_id = $1 AND banned = 0 \
                 AND expires_at < $2 AND new_expires_at < $2",
            )
            .bind(&agent.spiffe_id)
            .bind(expired_before)
            .execute(&self.pool)
            .await?;
            if deleted.rows_affected() > 0 {
                purged.push(agent);
            }
        }
        Ok(purged)
    }

    /// All attested agents, ordered by SPIFFE ID (byte-wise).
    pub async fn list_attested_agents(&self) -> Result<Vec<AttestedAgent>, DatastoreError> {
        let sql = format!("{SELECT_AGENTS} ORDER BY spiffe_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }
}

/// Agent selectors are stored as a JSON array of `[type, value]` pairs.
fn selectors_to_json(selectors: &[Selector]) -> Result<String, DatastoreError> {
    let pairs: Vec<(&str, &str)> = selectors
        .iter()
        .map(|s| (s.kind.as_str(), s.value.as_str()))
        .collect();
    to_json(&pairs, "selectors")
}

fn agent_from_row(row: &AnyRow) -> Result<AttestedAgent, DatastoreError> {
    let pairs: Vec<(String, String)> =
        from_json(&column::<String>(row, "selectors")?, "selectors")?;
    Ok(AttestedAgent {
        spiffe_id: column(row, "spiffe_id")?,
        attestation_type: column(row, "attestation_type")?,
        serial_number: column(row, "serial_number")?,
        expires_at: column(row, "expires_at")?,
        new_serial_number: column(row, "new_serial_number")?,
        new_expires_at: column(row, "new_expires_at")?,
        selectors: pairs
            .into_iter()
            .map(|(kind, value)| Selector { kind, value })
            .collect(),
        can_reattest: bool_from_db(column(row, "can_reattest")?, "can_reattest")?,
        banned: bool_from_db(column(row, "banned")?, "banned")?,
    })
}
