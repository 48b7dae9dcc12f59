//! The permissions a policy can grant.
//!
//! On the wire a permission is a lowercase string (`read`, `write`, `list`,
//! `execute`, `super`), as in SPIKE. Unknown strings are an error rather than
//! being silently ignored, so a typo in a policy cannot quietly grant less (or
//! more) than intended.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::policy::PolicyError;

/// One permission. `Super` implies every other permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read secret values.
    Read,
    /// Create, update or delete secrets.
    Write,
    /// List secret paths.
    List,
    /// Use the cipher (encrypt/decrypt) service.
    Execute,
    /// Everything.
    Super,
}

impl Permission {
    /// All permissions, in wire order.
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Write,
        Permission::List,
        Permission::Execute,
        Permission::Super,
    ];

    /// The wire name of this permission.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::List => "list",
            Permission::Execute => "execute",
            Permission::Super => "super",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownPermission(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_permissions() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().ok(), Some(p));
        }
    }

    #[test]
    fn unknown_permission_rejected() {
        let err = "admin".parse::<Permission>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "permissions: unknown permission `admin` (expected read, write, list, execute or super)"
            )
        );
        assert!("READ".parse::<Permission>().is_err());
        assert!(serde_json::from_str::<Permission>("\"admin\"").is_err());
    }

    #[test]
    fn serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Permission::Execute).ok().as_deref(),
            Some("\"execute\"")
        );
    }
}
