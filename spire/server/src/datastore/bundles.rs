//! Trust bundles (`bundles`). The authorities of a bundle are JSON documents in the bundle's
//! row (bytes as base64), so a bundle is always read and written as one row, atomically.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::entries::column;
use super::{Bundle, Datastore, DatastoreError, JwtKey, from_json, to_json};

const SELECT_BUNDLES: &str = "SELECT trust_domain, x509_authorities, jwt_authorities, \
     sequence_number, refresh_hint FROM bundles";

/// Stored form of a [`JwtKey`].
#[derive(Serialize, Deserialize)]
struct JwtKeyDoc {
    key_id: String,
    /// SPKI DER, base64 (standard alphabet, padded).
    public_key: String,
    expires_at: i64,
}

impl Datastore {
    /// The bundle of `trust_domain`, if stored.
    pub async fn get_bundle(&self, trust_domain: &str) -> Result<Option<Bundle>, DatastoreError> {
        let sql = format!("{SELECT_BUNDLES} WHERE trust_domain = $1");
        let row = sqlx::query(&sql)
            .bind(trust_domain)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(bundle_from_row).transpose()
    }

    /// Stores `bundle`, replacing any bundle of the same trust domain, and returns it as
    /// stored. The `sequence_number` passed in is ignored: the stored one is the previous
    /// one plus 1, or 1 for a new bundle. One statement, so concurrent calls never reuse a
    /// sequence number.
    pub async fn set_bundle(&self, bundle: &Bundle) -> Result<Bundle, DatastoreError> {
        upsert_bundle(&self.pool, bundle).await
    }

    /// Stores `bundle` only if the stored one is still the one the caller read: sequence
    /// number `expected`, or none at all for `None`. Returns the bundle as stored, or `None`
    /// when another writer (for example another server sharing the datastore) changed it
    /// first, so the caller reads again and reapplies its change instead of overwriting.
    pub async fn set_bundle_if(
        &self,
        bundle: &Bundle,
        expected: Option<i64>,
    ) -> Result<Option<Bundle>, DatastoreError> {
        let (x509, jwt) = encode_authorities(bundle)?;
        let query = match expected {
            None => sqlx::query(
                "INSERT INTO bundles (trust_domain, x509_authorities, jwt_authorities, \
                 sequence_number, refresh_hint) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (trust_domain) DO NOTHING RETURNING sequence_number",
            ),
            Some(_) => sqlx::query(
                "UPDATE bundles SET x509_authorities = $2, jwt_authorities = $3, \
                 refresh_hint = $4, sequence_number = sequence_number + 1 \
                 WHERE trust_domain = $1 AND sequence_number = $5 RETURNING sequence_number",
            ),
        };
        let mut query = query
            .bind(&bundle.trust_domain)
            .bind(x509)
            .bind(jwt)
            .bind(bundle.refresh_hint);
        if let Some(expected) = expected {
            query = query.bind(expected);
        }
        let Some(row) = query.fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut stored = bundle.clone();
        stored.sequence_number = column(&row, "sequence_number")?;
        Ok(Some(stored))
    }

    /// All stored bundles, ordered by trust domain (byte-wise).
    pub async fn list_bundles(&self) -> Result<Vec<Bundle>, DatastoreError> {
        let sql = format!("{SELECT_BUNDLES} ORDER BY trust_domain");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(bundle_from_row).collect()
    }

    /// Deletes the bundle of `trust_domain`; returns whether it existed.
    pub async fn delete_bundle(&self, trust_domain: &str) -> Result<bool, DatastoreError> {
        let result = sqlx::query("DELETE FROM bundles WHERE trust_domain = $1")
            .bind(trust_domain)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// [`Datastore::set_bundle`] on any executor, so a transaction can store a bundle together
/// with what it belongs to (a federation relationship and its bootstrap bundle).
pub(super) async fn upsert_bundle<'e, E>(
    executor: E,
    bundle: &Bundle,
) -> Result<Bundle, DatastoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (x509, jwt) = encode_authorities(bundle)?;
    let row = sqlx::query(
        "INSERT INTO bundles (trust_domain, x509_authorities, jwt_authorities, \
         sequence_number, refresh_hint) VALUES ($1, $2, $3, 1, $4) \
         ON CONFLICT (trust_domain) DO UPDATE SET \
         x509_authorities = excluded.x509_authorities, \
         jwt_authorities = excluded.jwt_authorities, \
         refresh_hint = excluded.refresh_hint, \
         sequence_number = bundles.sequence_number + 1 \
         RETURNING sequence_number",
    )
    .bind(&bundle.trust_domain)
    .bind(x509)
    .bind(jwt)
    .bind(bundle.refresh_hint)
    .fetch_one(executor)
    .await?;
    let mut stored = bundle.clone();
    stored.sequence_number = column(&row, "sequence_number")?;
    Ok(stored)
}

/// The stored (JSON) forms of a bundle's X.509 and JWT authorities.
fn encode_authorities(bundle: &Bundle) -> Result<(String, String), DatastoreError> {
    let x509: Vec<String> = bundle
        .x509_authorities
        .iter()
        .map(|der| BASE64.encode(der))
        .collect();
    let jwt: Vec<JwtKeyDoc> = bundle
        .jwt_authorities
        .iter()
        .map(|key| JwtKeyDoc {
            key_id: key.key_id.clone(),
            public_key: BASE64.encode(&key.public_key),
            expires_at: key.expires_at,
        })
        .collect();
    Ok((
        to_json(&x509, "x509_authorities")?,
        to_json(&jwt, "jwt_authorities")?,
    ))
}

fn decode_base64(text: &str, column: &str) -> Result<Vec<u8>, DatastoreError> {
    BASE64
        .decode(text)
        .map_err(|e| DatastoreError::Corrupt(format!("column {column} holds invalid base64: {e}")))
}

fn bundle_from_row(row: &AnyRow) -> Result<Bundle, DatastoreError> {
    let x509: Vec<String> = from_json(
        &column::<String>(row, "x509_authorities")?,
        "x509_authorities",
    )?;
    let jwt: Vec<JwtKeyDoc> = from_json(
        &column::<String>(row, "jwt_authorities")?,
        "jwt_authorities",
    )?;
    Ok(Bundle {
        trust_domain: column(row, "trust_domain")?,
        x509_authorities: x509
            .iter()
            .map(|b64| decode_base64(b64, "x509_authorities"))
            .collect::<Result<_, _>>()?,
        jwt_authorities: jwt
            .into_iter()
            .map(|doc| {
                Ok(JwtKey {
                    public_key: decode_base64(&doc.public_key, "jwt_authorities")?,
                    key_id: doc.key_id,
                    expires_at: doc.expires_at,
                })
            })
            .collect::<Result<_, DatastoreError>>()?,
        sequence_number: column(row, "sequence_number")?,
        refresh_hint: column(row, "refresh_hint")?,
    })
}
