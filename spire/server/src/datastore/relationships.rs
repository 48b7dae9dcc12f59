//! Federation relationships created at run time (`federation_relationships`), each written
//! together with the bundle it is bootstrapped with, if any.

use sqlx::any::AnyRow;

use super::bundles::upsert_bundle;
use super::entries::column;
use super::{Bundle, Datastore, DatastoreError, Relationship, is_unique_violation};

const SELECT: &str = "SELECT trust_domain, bundle_endpoint_url, bundle_endpoint_profile, \
     endpoint_spiffe_id FROM federation_relationships";

impl Datastore {
    /// Stores a new relationship, and with it `bootstrap` (the bundle its endpoint is first
    /// verified with) if given, in one transaction: both are written or neither. Fails with
    /// [`DatastoreError::AlreadyExists`] if a relationship exists for that trust domain.
    pub async fn create_relationship(
        &self,
        rel: &Relationship,
        bootstrap: Option<&Bundle>,
    ) -> Result<(), DatastoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url, \
             bundle_endpoint_profile, endpoint_spiffe_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&rel.trust_domain)
        .bind(&rel.bundle_endpoint_url)
        .bind(&rel.bundle_endpoint_profile)
        .bind(&rel.endpoint_spiffe_id)
        .bind(self.clock.unix_seconds())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Err(DatastoreError::AlreadyExists(format!(
                    "a federation relationship with {} exists",
                    rel.trust_domain
                )));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(bundle) = bootstrap {
            upsert_bundle(&mut *tx, bundle).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the relationship of `rel.trust_domain`, and sets `bootstrap` if given, in one
    /// transaction. Fails with [`DatastoreError::NotFound`] if there is no relationship.
    pub async fn update_relationship(
        &self,
        rel: &Relationship,
        bootstrap: Option<&Bundle>,
    ) -> Result<(), DatastoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE federation_relationships SET bundle_endpoint_url = $2, \
             bundle_endpoint_profile = $3, endpoint_spiffe_id = $4 WHERE trust_domain = $1",
        )
        .bind(&rel.trust_domain)
        .bind(&rel.bundle_endpoint_url)
        .bind(&rel.bundle_endpoint_profile)
        .bind(&rel.endpoint_spiffe_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(DatastoreError::NotFound(format!(
                "federation relationship with {}",
                rel.trust_domain
            )));
        }
        if let Some(bundle) = bootstrap {
            upsert_bundle(&mut *tx, bundle).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the relationship of `trust_domain` (its bundle stays); whether it existed.
    pub async fn delete_relationship(&self, trust_domain: &str) -> Result<bool, DatastoreError> {
        let deleted = sqlx::query("DELETE FROM federation_relationships WHERE trust_domain = $1")
            .bind(trust_domain)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    /// The relationship of `trust_domain`, if stored.
    pub async fn get_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<Option<Relationship>, DatastoreError> {
        let sql = format!("{SELECT} WHERE trust_domain = $1");
        let row = sqlx::query(&sql)
            .bind(trust_domain)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every stored relationship, ordered by trust domain (byte-wise).
    pub async fn list_relationships(&self) -> Result<Vec<Relationship>, DatastoreError> {
        let sql = format!("{SELECT} ORDER BY trust_domain");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }
}

fn from_row(row: &AnyRow) -> Result<Relationship, DatastoreError> {
    Ok(Relationship {
        trust_domain: column(row, "trust_domain")?,
        bundle_endpoint_url: column(row, "bundle_endpoint_url")?,
        bundle_endpoint_profile: column(row, "bundle_endpoint_profile")?,
        endpoint_spiffe_id: column(row, "endpoint_spiffe_id")?,
    })
}
