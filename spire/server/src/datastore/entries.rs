//! Registration entries and their selectors (`entries`, `entry_selectors`).

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{
    Datastore, DatastoreError, Entry, EntryFilter, Selector, bool_from_db, bool_to_db, from_json,
    is_unique_violation, to_json,
};

/// Entry columns plus one selector per row (LEFT JOIN, so NULL for an entry without any).
/// Reading an entry with its selectors in ONE statement gives a consistent snapshot on
/// PostgreSQL too (where each statement of a READ COMMITTED transaction sees new data).
const SELECT_ENTRIES: &str = "SELECT e.id, e.spiffe_id, e.parent_id, e.x509_svid_ttl, \
     e.jwt_svid_ttl, e.dns_names, e.federates_with, e.hint, e.admin, e.downstream, \
     e.revision_number, e.created_at, e.expires_at, \
     s.type AS selector_type, s.value AS selector_value \
     FROM entries e LEFT JOIN entry_selectors s ON s.entry_id = e.id";

/// Ordering that keeps each entry's selector rows adjacent and in their stored order.
const ORDER_ENTRIES: &str = "ORDER BY e.id, s.position";

impl Datastore {
    /// Creates `entry` (its `id` is chosen by the caller) and returns it as stored:
    /// `created_at` set to now if it was 0, `revision_number` 0.
    ///
    /// Fails with [`DatastoreError::AlreadyExists`] if the ID is taken or another entry has
    /// the same SPIFFE ID, parent ID and selector set (order and repetition ignored). The
    /// latter is a unique index, so concurrent creates cannot both succeed.
    pub async fn create_entry(&self, entry: &Entry) -> Result<Entry, DatastoreError> {
        let mut tx = self.begin_write().await?;
        match insert_entry(&mut tx, entry, self.clock.unix_seconds()).await {
            Ok(stored) => {
                tx.commit().await?;
                Ok(stored)
            }
            Err(err) => {
                tx.rollback().await?;
                Err(self.name_conflict(entry, err).await)
            }
        }
    }

    /// Turns a unique violation from [`insert_entry`] into an error naming what `entry`
    /// collides with (looked up after the failed transaction is rolled back).
    pub(super) async fn name_conflict(&self, entry: &Entry, err: DatastoreError) -> DatastoreError {
        match err {
            DatastoreError::Sql(common_sql::SqlError::Sqlx(err)) if is_unique_violation(&err) => {
                self.create_conflict(entry).await
            }
            other => other,
        }
    }

    /// Replaces every field of the entry with ID `entry.id` except `created_at`, replaces
    /// its selectors and increments its revision number. Returns the entry as stored.
    ///
    /// Fails with [`DatastoreError::NotFound`] if there is no such entry and with
    /// [`DatastoreError::AlreadyExists`] if another entry already has the new SPIFFE ID,
    /// parent ID and selector set.
    pub async fn update_entry(&self, entry: &Entry) -> Result<Entry, DatastoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors_key = $4, \
             x509_svid_ttl = $5, jwt_svid_ttl = $6, dns_names = $7, federates_with = $8, \
             hint = $9, admin = $10, downstream = $11, expires_at = $12, \
             revision_number = revision_number + 1 \
             WHERE id = $1 RETURNING created_at, revision_number",
        )
        .bind(&entry.id)
        .bind(&entry.spiffe_id)
        .bind(&entry.parent_id)
        .bind(selectors_key(&entry.selectors)?)
        .bind(entry.x509_svid_ttl)
        .bind(entry.jwt_svid_ttl)
        .bind(to_json(&entry.dns_names, "dns_names")?)
        .bind(to_json(&entry.federates_with, "federates_with")?)
        .bind(&entry.hint)
        .bind(bool_to_db(entry.admin))
        .bind(bool_to_db(entry.downstream))
        .bind(entry.expires_at)
        .fetch_optional(&mut *tx)
        .await;
        let row = match updated {
            Ok(Some(row)) => row,
            Ok(None) => {
                tx.rollback().await?;
                return Err(DatastoreError::NotFound(format!("entry {:?}", entry.id)));
            }
            Err(err) => {
                tx.rollback().await?;
                if is_unique_violation(&err) {
                    return Err(DatastoreError::AlreadyExists(format!(
                        "another entry has SPIFFE ID {:?}, parent ID {:?} and the same selectors",
                        entry.spiffe_id, entry.parent_id
                    )));
                }
                return Err(err.into());
            }
        };
        let mut stored = entry.clone();
        stored.created_at = column(&row, "created_at")?;
        stored.revision_number = column(&row, "revision_number")?;

        sqlx::query("DELETE FROM entry_selectors WHERE entry_id = $1")
            .bind(&entry.id)
            .execute(&mut *tx)
            .await?;
        insert_selectors(&mut tx, &entry.id, &entry.selectors).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Deletes the entry with ID `id` (its selectors go with it) and returns it as it was.
    /// Fails with [`DatastoreError::NotFound`] if there is no such entry.
    pub async fn delete_entry(&self, id: &str) -> Result<Entry, DatastoreError> {
        let mut tx = self.begin_write().await?;
        // A no-op write first: it locks the row (PostgreSQL), so no concurrent update can
        // slip in between reading the entry and deleting it, and reports whether it exists.
        let locked =
            sqlx::query("UPDATE entries SET revision_number = revision_number WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if locked.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(DatastoreError::NotFound(format!("entry {id:?}")));
        }
        let sql = format!("{SELECT_ENTRIES} WHERE e.id = $1 {ORDER_ENTRIES}");
        let rows = sqlx::query(&sql).bind(id).fetch_all(&mut *tx).await?;
        let entry = entries_from_rows(&rows)?
            .pop()
            .ok_or_else(|| DatastoreError::NotFound(format!("entry {id:?}")))?;
        sqlx::query("DELETE FROM entries WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// The entry with ID `id`, if any.
    pub async fn get_entry(&self, id: &str) -> Result<Option<Entry>, DatastoreError> {
        let sql = format!("{SELECT_ENTRIES} WHERE e.id = $1 {ORDER_ENTRIES}");
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        Ok(entries_from_rows(&rows)?.pop())
    }

    /// The entries matching every criterion of `filter`, ordered by ID (byte-wise).
    pub async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<Entry>, DatastoreError> {
        let mut conditions = Vec::new();
        let mut params: Vec<&str> = Vec::new();
        if let Some(spiffe_id) = &filter.spiffe_id {
            params.push(spiffe_id);
            conditions.push(format!("e.spiffe_id = ${}", params.len()));
        }
        if let Some(parent_id) = &filter.parent_id {
            params.push(parent_id);
            conditions.push(format!("e.parent_id = ${}", params.len()));
        }
        for selector in &filter.selectors {
            params.push(&selector.kind);
            params.push(&selector.value);
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM entry_selectors f WHERE f.entry_id = e.id \
                 AND f.type = ${} AND f.value = ${})",
                params.len() - 1,
                params.len()
            ));
        }
        let sql = if conditions.is_empty() {
            format!("{SELECT_ENTRIES} {ORDER_ENTRIES}")
        } else {
            format!(
                "{SELECT_ENTRIES} WHERE {} {ORDER_ENTRIES}",
                conditions.join(" AND ")
            )
        };
        let mut query = sqlx::query(&sql);
        for param in params {
            query = query.bind(param);
        }
        let rows = query.fetch_all(&self.pool).await?;
        entries_from_rows(&rows)
    }

    /// The number of registration entries.
    pub async fn count_entries(&self) -> Result<i64, DatastoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM entries")
            .fetch_one(&self.pool)
            .await?;
        column(&row, "n")
    }

    /// Explains a unique violation on insert: duplicate ID, or duplicate identity mapping.
    async fn create_conflict(&self, entry: &Entry) -> DatastoreError {
        let id_taken = sqlx::query("SELECT 1 FROM entries WHERE id = $1")
            .bind(&entry.id)
            .fetch_optional(&self.pool)
            .await;
        match id_taken {
            Ok(Some(_)) => {
                DatastoreError::AlreadyExists(format!("an entry with ID {:?} exists", entry.id))
            }
            Ok(None) => DatastoreError::AlreadyExists(format!(
                "an entry with SPIFFE ID {:?}, parent ID {:?} and the same selectors exists",
                entry.spiffe_id, entry.parent_id
            )),
            Err(err) => err.into(),
        }
    }
}

/// Canonical key of a selector SET: SHA-256 (hex) of the sorted, de-duplicated
/// `[type, value]` pairs as JSON. Unlike joining `type:value` strings, JSON cannot make two
/// different sets collide (a `:` or newline inside a value is escaped/quoted), and the
/// digest keeps the indexed value short however many selectors an entry has.
pub(super) fn selectors_key(selectors: &[Selector]) -> Result<String, DatastoreError> {
    let mut pairs: Vec<(&str, &str)> = selectors
        .iter()
        .map(|s| (s.kind.as_str(), s.value.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let canonical = super::to_json(&pairs, "selectors")?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Inserts `entry` and its selectors inside `tx` and returns it as stored (see
/// [`Datastore::create_entry`]), created `now` unless it says when. The caller rolls `tx`
/// back on failure.
pub(super) async fn insert_entry(
    tx: &mut Transaction<'static, Any>,
    entry: &Entry,
    now: i64,
) -> Result<Entry, DatastoreError> {
    let mut stored = entry.clone();
    stored.revision_number = 0;
    if stored.created_at == 0 {
        stored.created_at = now;
    }
    sqlx::query(
        "INSERT INTO entries (id, spiffe_id, parent_id, selectors_key, x509_svid_ttl, \
         jwt_svid_ttl, dns_names, federates_with, hint, admin, downstream, \
         revision_number, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&stored.id)
    .bind(&stored.spiffe_id)
    .bind(&stored.parent_id)
    .bind(selectors_key(&stored.selectors)?)
    .bind(stored.x509_svid_ttl)
    .bind(stored.jwt_svid_ttl)
    .bind(to_json(&stored.dns_names, "dns_names")?)
    .bind(to_json(&stored.federates_with, "federates_with")?)
    .bind(&stored.hint)
    .bind(bool_to_db(stored.admin))
    .bind(bool_to_db(stored.downstream))
    .bind(stored.revision_number)
    .bind(stored.created_at)
    .bind(stored.expires_at)
    .execute(&mut **tx)
    .await?;
    insert_selectors(tx, &stored.id, &stored.selectors).await?;
    Ok(stored)
}

async fn insert_selectors(
    tx: &mut Transaction<'static, Any>,
    entry_id: &str,
    selectors: &[Selector],
) -> Result<(), DatastoreError> {
    for (position, selector) in (0_i64..).zip(selectors) {
        sqlx::query(
            "INSERT INTO entry_selectors (entry_id, position, type, value) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(entry_id)
        .bind(position)
        .bind(&selector.kind)
        .bind(&selector.value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Reads one column, reporting an undecodable value as corruption.
pub(super) fn column<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, DatastoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name)
        .map_err(|e| DatastoreError::Corrupt(format!("cannot read column {name}: {e}")))
}

/// Folds `SELECT_ENTRIES … ORDER_ENTRIES` rows (one per selector) into entries.
fn entries_from_rows(rows: &[AnyRow]) -> Result<Vec<Entry>, DatastoreError> {
    let mut entries: Vec<Entry> = Vec::new();
    for row in rows {
        let id: String = column(row, "id")?;
        let same_entry = entries.last().is_some_and(|last| last.id == id);
        if !same_entry {
            entries.push(Entry {
                id,
                spiffe_id: column(row, "spiffe_id")?,
                parent_id: column(row, "parent_id")?,
                selectors: Vec::new(),
                x509_svid_ttl: column(row, "x509_svid_ttl")?,
                jwt_svid_ttl: column(row, "jwt_svid_ttl")?,
                dns_names: from_json(&column::<String>(row, "dns_names")?, "dns_names")?,
                federates_with: from_json(
                    &column::<String>(row, "federates_with")?,
                    "federates_with",
                )?,
                hint: column(row, "hint")?,
                admin: bool_from_db(column(row, "admin")?, "admin")?,
                downstream: bool_from_db(column(row, "downstream")?, "downstream")?,
                revision_number: column(row, "revision_number")?,
                created_at: column(row, "created_at")?,
                expires_at: column(row, "expires_at")?,
            });
        }
        let kind: Option<String> = column(row, "selector_type")?;
        let value: Option<String> = column(row, "selector_value")?;
        if let (Some(kind), Some(value), Some(entry)) = (kind, value, entries.last_mut()) {
            entry.selectors.push(Selector { kind, value });
        }
    }
    Ok(entries)
}
