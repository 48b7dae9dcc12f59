//! SQLite specifics: the URL's create mode, the database file's permissions, and the pragmas
//! every connection gets.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, Executor};

use crate::SqlError;

/// Pragmas applied to every SQLite connection, in order.
const PRAGMAS: &[&str] = &[
    // Readers do not block the writer, nor the writer readers.
    "PRAGMA journal_mode=WAL",
    // An acknowledged write survives a power loss (WAL's default, NORMAL, may lose it).
    "PRAGMA synchronous=FULL",
    // SQLite ignores REFERENCES … ON DELETE CASCADE unless this is on, per connection.
    "PRAGMA foreign_keys=ON",
    // Wait up to 5 s for another connection's write lock instead of failing at once.
    "PRAGMA busy_timeout=5000",
];

pub(crate) async fn apply_pragmas(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in PRAGMAS {
        conn.execute(*pragma).await?;
    }
    Ok(())
}

/// Adds `mode=rwc` (create the file if missing) to a SQLite URL that does not choose a mode.
pub fn sqlite_url(url: &str) -> String {
    if query_mode(url).is_some() || is_in_memory(url) {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Whether the URL names an in-memory database rather than a file.
pub(crate) fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || query_mode(url) == Some("memory")
}

/// The value of the URL's `mode=` query parameter, if it has one.
fn query_mode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix("mode="))
}

/// Creates the database file of a `mode=rwc` URL, readable and writable by its owner only,
/// if it does not exist yet. Secrets metadata lives in it; left to SQLite the file would get
/// the process umask (often world-readable). SQLite gives the `-wal` and `-shm` files it
/// creates later the database file's permissions.
///
/// Runs once at start-up, so the blocking file system call is acceptable here.
pub(crate) fn create_private_file(url: &str) -> Result<(), SqlError> {
    if is_in_memory(url) || query_mode(url) != Some("rwc") {
        return Ok(());
    }
    // Parse the path exactly as sqlx will (prefix stripping, percent-decoding); a URL it
    // rejects is reported when connecting.
    let Ok(options) = SqliteConnectOptions::from_str(url) else {
        return Ok(());
    };
    let path = options.get_filename();
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    match create_new_private(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(SqlError::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn create_new_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::{create_private_file, sqlite_url};

    #[test]
    fn sqlite_url_gets_create_mode_unless_chosen() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db"),
            "sqlite:///tmp/a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db?cache=shared"),
            "sqlite:///tmp/a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db?mode=ro"),
            "sqlite:///tmp/a.db?mode=ro"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(sqlite_url("sqlite://?mode=memory"), "sqlite://?mode=memory");
    }

    #[cfg(unix)]
    #[test]
    fn new_database_file_is_private_and_existing_one_untouched() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new.db");
        let url = sqlite_url(&format!("sqlite://{}", path.display()));
        create_private_file(&url).expect("create file");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let existing = dir.path().join("existing.db");
        std::fs::write(&existing, b"").expect("write");
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        create_private_file(&sqlite_url(&format!("sqlite://{}", existing.display())))
            .expect("existing file is fine");
        let mode = std::fs::metadata(&existing)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);

        // A mode other than rwc means "do not create".
        let read_only = dir.path().join("ro.db");
        create_private_file(&format!("sqlite://{}?mode=ro", read_only.display()))
            .expect("nothing to do");
        assert!(!read_only.exists());

        // A missing directory is a clear error naming the file.
        let nested = dir.path().join("no/such/dir.db");
        let err = create_private_file(&sqlite_url(&format!("sqlite://{}", nested.display())))
            .expect_err("missing directory");
        assert!(err.to_string().contains("dir.db"), "{err}");
    }
}
