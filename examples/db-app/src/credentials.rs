//! The database login, read from Nexus.
//!
//! Nexus decides by our SPIFFE ID alone whether we may read the secret: there is no token or
//! password to get to the password. The password lives in a [`Zeroizing`] string, is wiped
//! when dropped, and `Debug` prints `[REDACTED]`, so logging a [`DbCredentials`] is harmless.

use nexus_api::{Client, ClientError, ErrorCode};
use zeroize::Zeroizing;

/// A user name and password for PostgreSQL, and the secret version they came from.
#[derive(PartialEq, Eq)]
pub struct DbCredentials {
    /// The PostgreSQL role to log in as.
    pub username: String,
    password: Zeroizing<String>,
    /// The secret's version (Nexus sends it; SPIKE does not, and then it is 0).
    pub version: u64,
}

impl DbCredentials {
    /// The password, for the database driver only.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .field("version", &self.version)
            .finish()
    }
}

/// Why the login could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// No policy grants our SPIFFE ID `read` on the secret.
    #[error(
        "not authorised: Nexus does not let {id} read secret `{path}` ({cause}). \
         Ask an admin to apply a policy granting this SPIFFE ID `read` on it."
    )]
    NotAuthorised {
        id: String,
        path: String,
        cause: ClientError,
    },
    /// Any other failure talking to Nexus.
    #[error("cannot read secret `{path}` from Nexus: {cause}")]
    Nexus { path: String, cause: ClientError },
    /// The secret exists but lacks a key we need.
    #[error("secret `{path}` has no key `{key}`")]
    MissingKey { path: String, key: String },
}

/// Where the login is kept: a secret path and the two keys in it.
#[derive(Debug, Clone)]
pub struct SecretRef {
    pub path: String,
    pub username_key: String,
    pub password_key: String,
}

impl SecretRef {
    /// Reads the current version of the secret from Nexus. `own_id` only serves the error
    /// message.
    pub async fn fetch(
        &self,
        nexus: &Client,
        own_id: &str,
    ) -> Result<DbCredentials, CredentialsError> {
        let secret = nexus
            .get_secret(&self.path, 0)
            .await
            .map_err(|cause| match cause.code() {
                Some(ErrorCode::Unauthorized) => CredentialsError::NotAuthorised {
                    id: own_id.to_owned(),
                    path: self.path.clone(),
                    cause,
                },
                _ => CredentialsError::Nexus {
                    path: self.path.clone(),
                    cause,
                },
            })?;
        let mut data = secret.data;
        let mut take = |key: &str| {
            data.remove(key)
                .ok_or_else(|| CredentialsError::MissingKey {
                    path: self.path.clone(),
                    key: key.to_owned(),
                })
        };
        // `remove` moves the value out of the answer without copying it, so the copy we keep
        // is wiped on drop (the HTTP client's buffers are beyond our reach).
        let password = Zeroizing::new(take(&self.password_key)?);
        let username = take(&self.username_key)?;
        Ok(DbCredentials {
            username,
            password,
            version: secret.version,
        })
    }
}
