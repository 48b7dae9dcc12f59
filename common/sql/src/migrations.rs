//! Schema migrations embedded in the binary, one list of file names for both backends.
//!
//! sqlx's `migrate!` macro does the same, but it is the only reason to enable sqlx's
//! `macros` feature, and that feature compiles sqlx's core and both database drivers a second
//! time, as host code for the proc macro: about a fifth of a clean build here. The files are
//! embedded with `include_str!` by [`embed_migrations!`](crate::embed_migrations) instead, and
//! handed to sqlx's own [`Migrator`] through its public [`MigrationSource`] trait. A migration
//! is named as sqlx names it (`<VERSION>_<DESCRIPTION>.sql`) and gets the same checksum, so
//! databases migrated by either way agree.

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::Backend;

/// One datastore's migrations: `(file name, SQL)` per backend, in version order. Made by
/// [`embed_migrations!`](crate::embed_migrations).
#[derive(Debug)]
pub struct Migrations {
    /// `migrations/sqlite/<file>` of the datastore's crate.
    pub sqlite: &'static [(&'static str, &'static str)],
    /// `migrations/postgres/<file>` of the datastore's crate.
    pub postgres: &'static [(&'static str, &'static str)],
}

/// Embeds `migrations/sqlite/<file>` and `migrations/postgres/<file>` of the calling crate
/// for each file name given, as a [`Migrations`]:
///
/// ```text
/// static MIGRATIONS: common_sql::Migrations =
///     common_sql::embed_migrations!["0001_initial.sql", "0002_more.sql"];
/// ```
///
/// A test of the crate should call [`Migrations::check_directory`], so that a file added to
/// the directories but not to the list fails.
#[macro_export]
macro_rules! embed_migrations {
    ($($file:literal),+ $(,)?) => {
        $crate::Migrations {
            sqlite: &[$((
                $file,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file)),
            )),+],
            postgres: &[$((
                $file,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $file)),
            )),+],
        }
    };
}

/// A migration file name that is not `<VERSION>_<DESCRIPTION>.sql`.
#[derive(Debug, thiserror::Error)]
#[error("migration file {0:?} is not named <VERSION>_<DESCRIPTION>.sql")]
pub struct BadMigrationName(&'static str);

impl Migrations {
    /// sqlx's migrator for `backend`'s files.
    pub async fn migrator(
        &self,
        backend: Backend,
    ) -> Result<Migrator, sqlx::migrate::MigrateError> {
        let files = match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        };
        Migrator::new(Embedded(files)).await
    }

    /// Checks that the embedded list names exactly the files of `crate_dir/migrations/*/`,
    /// for a test of the datastore's crate. Returns what differs, if anything.
    pub fn check_directory(&self, crate_dir: &Path) -> Result<(), String> {
        for (backend, files) in [("sqlite", self.sqlite), ("postgres", self.postgres)] {
            let dir = crate_dir.join("migrations").join(backend);
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sql"))
                .collect();
            on_disk.sort();
            let embedded: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
            if on_disk != embedded {
                return Err(format!(
                    "{} holds {on_disk:?} but embed_migrations! lists {embedded:?}",
                    dir.display()
                ));
            }
            for (name, _) in files {
                parse_name(name).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// `(version, description)` from `<VERSION>_<DESCRIPTION>.sql`, as sqlx reads them
/// (underscores in the description become spaces).
fn parse_name(name: &'static str) -> Result<(i64, String), BadMigrationName> {
    let stem = name.strip_suffix(".sql").ok_or(BadMigrationName(name))?;
    let (version, description) = stem.split_once('_').ok_or(BadMigrationName(name))?;
    let version: i64 = version.parse().map_err(|_| BadMigrationName(name))?;
    if version <= 0 {
        return Err(BadMigrationName(name));
    }
    Ok((version, description.replace('_', " ")))
}

#[derive(Debug)]
struct Embedded(&'static [(&'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            let mut migrations = Vec::with_capacity(self.0.len());
            for (name, sql) in self.0 {
                let (version, description) = parse_name(name)?;
                // As sqlx's own source: a file starting with this line runs outside a
                // transaction.
                let no_tx = sql.starts_with("-- no-transaction");
                migrations.push(Migration::new(
                    version,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    no_tx,
                ));
            }
            migrations.sort_by_key(|m| m.version);
            Ok(migrations)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_sqlx_reads_them() {
        assert_eq!(
            parse_name("0007_keeper_set.sql").expect("valid"),
            (7, "keeper set".to_owned())
        );
        for bad in [
            "0007keeper.sql",
            "x_y.sql",
            "0007_a.txt",
            "0000_zero.sql",
            "-1_a.sql",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_migrator_has_every_file_in_version_order_with_sqlx_checksums() {
        static FILES: Migrations = Migrations {
            sqlite: &[
                ("0002_b_c.sql", "CREATE TABLE b (x);"),
                ("0001_a.sql", "CREATE TABLE a (x);"),
            ],
            postgres: &[("0001_a.sql", "-- no-transaction\nCREATE TABLE a (x);")],
        };
        let migrator = FILES.migrator(Backend::Sqlite).await.expect("migrator");
        let found: Vec<(i64, &str, bool)> = migrator
            .iter()
            .map(|m| (m.version, m.description.as_ref(), m.no_tx))
            .collect();
        assert_eq!(found, [(1, "a", false), (2, "b c", false)]);
        let expected = Migration::new(
            1,
            "a".into(),
            MigrationType::Simple,
            "CREATE TABLE a (x);".into(),
            false,
        );
        assert_eq!(
            migrator.iter().next().expect("first").checksum,
            expected.checksum
        );
        let postgres = FILES.migrator(Backend::Postgres).await.expect("migrator");
        assert!(postgres.iter().all(|m| m.no_tx));
    }
}
