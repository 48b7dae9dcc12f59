//! [`Grant`]: the proof of authorisation. Its fields are private and its only constructor
//! is visible to [`super`] alone, so code outside the authoriser cannot make one; the
//! service methods that touch secrets, policies, keys or shards take one and check that it
//! covers what they are about to do.

use policies::{Permission, Role};
use spiffe::SpiffeId;

use crate::error::ServiceError;

/// What a [`Grant`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Nothing beyond what every caller of the trust domain may see (status).
    Anyone,
    /// What a role's routes do.
    Role(Role),
    /// One permission on one path (a secret path or a system path).
    Path {
        /// The permission.
        permission: Permission,
        /// The path.
        path: String,
    },
    /// Listing secrets, each caller seeing only the paths it may read.
    Readable,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Anyone => f.write_str("anyone"),
            Scope::Role(role) => write!(f, "the {role} role"),
            Scope::Path { permission, path } => write!(f, "{permission} on {path:?}"),
            Scope::Readable => f.write_str("listing readable secrets"),
        }
    }
}

/// Proof that the authoriser allowed `caller` what `scope` says.
#[derive(Debug)]
pub struct Grant {
    caller: SpiffeId,
    scope: Scope,
}

/// A grant presented for something it does not cover: a fault in the code that presented
/// it, refused rather than trusted.
#[derive(Debug, thiserror::Error)]
#[error("a grant of {granted} was presented for {wanted}")]
pub struct NotGranted {
    granted: Scope,
    wanted: Scope,
}

impl Grant {
    /// Only the authoriser makes grants.
    pub(super) fn new(caller: SpiffeId, scope: Scope) -> Self {
        Grant { caller, scope }
    }

    /// Who was authorised.
    pub fn caller(&self) -> &SpiffeId {
        &self.caller
    }

    /// What was authorised.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    fn covers(&self, wanted: Scope) -> Result<(), NotGranted> {
        if self.scope == wanted {
            Ok(())
        } else {
            Err(NotGranted {
                granted: self.scope.clone(),
                wanted,
            })
        }
    }

    /// Checks that this grant is `permission` on exactly `path`.
    pub fn for_path(&self, permission: Permission, path: &str) -> Result<(), NotGranted> {
        self.covers(Scope::Path {
            permission,
            path: path.to_owned(),
        })
    }

    /// Checks that this grant is for `role`.
    pub fn for_role(&self, role: Role) -> Result<(), NotGranted> {
        self.covers(Scope::Role(role))
    }

    /// Checks that this grant is for listing readable secrets.
    pub fn for_listing(&self) -> Result<(), NotGranted> {
        self.covers(Scope::Readable)
    }
}

impl From<NotGranted> for ServiceError {
    fn from(error: NotGranted) -> Self {
        tracing::error!(%error, "refused an operation its grant does not cover");
        ServiceError::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_covers_exactly_what_was_judged() {
        let caller = SpiffeId::new("spiffe://td/app").expect("SPIFFE ID");
        let read_a = Grant::new(
            caller,
            Scope::Path {
                permission: Permission::Read,
                path: "db/a".into(),
            },
        );
        assert!(read_a.for_path(Permission::Read, "db/a").is_ok());
        let other_path = read_a
            .for_path(Permission::Read, "db/b")
            .expect_err("other path");
        assert_eq!(
            other_path.to_string(),
            "a grant of read on \"db/a\" was presented for read on \"db/b\""
        );
        assert!(read_a.for_path(Permission::Write, "db/a").is_err());
        assert!(read_a.for_role(Role::Superuser).is_err());
        assert!(read_a.for_listing().is_err());
    }
}
