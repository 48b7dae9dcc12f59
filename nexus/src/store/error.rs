//! What can go wrong in the store, and which failures mean "the database is down".

use common_sql::SqlError;

/// Errors returned by the [`Store`](super::Store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named object does not exist.
    #[error("{0} not found")]
    NotFound(Missing),
    /// A check-and-set put expected another latest version.
    #[error(
        "check-and-set expected version {expected}, but the latest version is {current}; \
         read the secret again and retry"
    )]
    CasMismatch {
        /// The version the caller expected to be the latest.
        expected: u64,
        /// The latest version actually stored (0: the secret has none).
        current: u64,
    },
    /// A write without check-and-set to a secret that requires it (its own `cas_required`
    /// or Nexus's global option).
    #[error(
        "check-and-set is required for writes to {0}: give the version the write replaces \
         (`cas`, 0 for a new secret)"
    )]
    CasRequired(String),
    /// The caller's seal function failed; nothing was written.
    #[error("sealing the record failed: {0}")]
    Crypto(#[from] nexus_crypto::CryptoError),
    /// Connecting, migrating or querying failed (`common_sql` says which).
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The root key changed since this process learnt it (another Nexus rotated it); the
    /// write was refused so no record is sealed under a retired key.
    #[error("the root key was rotated by another Nexus; this one must reload it")]
    KeyChanged,
    /// An operator sealed Nexus (possibly through another replica); the write was refused.
    #[error("Nexus was sealed by an operator; nothing is written until `spike operator unseal`")]
    Sealed,
    /// The write succeeded, but the transaction it shared with other writes (group
    /// commit, see `group_commit`) failed to commit: it was not written.
    #[error("committing a group of writes failed, so this write was not stored: {0}")]
    GroupCommit(std::sync::Arc<StoreError>),
    /// A stored value is out of its valid range.
    #[error("corrupt data in datastore: {0}")]
    Corrupt(Corruption),
}

/// What is wrong with data read from the datastore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// A time column holds a time `time` cannot represent.
    #[error("column {column} holds time {millis} ms")]
    Time {
        /// The column.
        column: String,
        /// Its value.
        millis: i64,
    },
    /// A version or count column holds a negative number.
    #[error("column {column} holds {value}, expected >= 0")]
    Negative {
        /// The column.
        column: String,
        /// Its value.
        value: i64,
    },
    /// A column holds a number out of its type's range.
    #[error("column {column} holds {value}")]
    OutOfRange {
        /// The column.
        column: String,
        /// Its value.
        value: i64,
    },
    /// The list of every path the database built is not a JSON array of strings.
    #[error("the list of secret paths is not a JSON array of strings: {reason}")]
    PathList {
        /// What the JSON parser said, with the position.
        reason: String,
    },
    /// A secret's version counters are below 1.
    #[error("secret {path} has latest_version {latest} and max_versions {max}")]
    Counters {
        /// The secret.
        path: String,
        /// Its `latest_version`.
        latest: i64,
        /// Its `max_versions`.
        max: i64,
    },
    /// A secret version's number is negative.
    #[error("version {version} of {path}")]
    Version {
        /// The secret.
        path: String,
        /// The number stored.
        version: i64,
    },
    /// A secret's `custom_metadata` column is not a JSON object of strings.
    #[error("custom_metadata of secret {path} is not a JSON object of strings")]
    CustomMetadata {
        /// The secret.
        path: String,
    },
    /// The single `policy_generation` row is gone.
    #[error("the policy_generation row is missing")]
    NoGeneration,
    /// A key record was written by someone not holding the initialisation lock.
    #[error("a root key record appeared while the initialisation lock was held")]
    RecordAppeared,
}

/// What was not found, named as a message says it: `secret db/x`, `version 3 of db/x`,
/// `policy "p"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No secret at this path.
    Secret(String),
    /// None of these versions of the secret at this path.
    Versions {
        /// The secret's path.
        path: String,
        /// The versions asked for.
        versions: Vec<u64>,
    },
    /// The secret at this path has no current version (all are deleted).
    CurrentVersion(String),
    /// Undelete: the secret's current version is not deleted (or it has none).
    DeletedCurrentVersion(String),
    /// Undelete: none of these versions is deleted.
    DeletedVersions {
        /// The secret's path.
        path: String,
        /// The versions asked for.
        versions: Vec<u64>,
    },
    /// No policy of this name.
    Policy(String),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Secret(path) => write!(f, "secret {path}"),
            Missing::Versions { path, versions } => describe_versions(f, versions, path),
            Missing::CurrentVersion(path) => write!(f, "current version of {path}"),
            Missing::DeletedCurrentVersion(path) => {
                write!(f, "deleted current version of {path}")
            }
            Missing::DeletedVersions { path, versions } => {
                f.write_str("deleted ")?;
                describe_versions(f, versions, path)
            }
            Missing::Policy(name) => write!(f, "policy {name:?}"),
        }
    }
}

/// `version 3 of db/x` or `versions 1, 2 of db/x`.
fn describe_versions(
    f: &mut std::fmt::Formatter<'_>,
    versions: &[u64],
    path: &str,
) -> std::fmt::Result {
    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
    let noun = if versions.len() == 1 {
        "version"
    } else {
        "versions"
    };
    write!(f, "{noun} {} of {path}", list.join(", "))
}

impl StoreError {
    /// Whether the database is unreachable, overloaded or shutting down (so an API should
    /// answer 503 and the caller retry), rather than the operation being at fault.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sql(SqlError::Sqlx(err)) => common_sql::is_unavailable(err),
            StoreError::Sql(SqlError::Migrate(sqlx::migrate::MigrateError::Execute(err))) => {
                common_sql::is_unavailable(err)
            }
            StoreError::GroupCommit(group) => group.is_unavailable(),
            _ => false,
        }
    }
}

/// Every query's `?`: a database error is one of `common_sql`'s.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Sql(SqlError::Sqlx(err))
    }
}
