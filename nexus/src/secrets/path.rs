//! [`SecretPath`]: a secret's path, parsed once where the request arrives, so the core and
//! the store never see a path nobody checked.

use std::fmt;

/// Longest secret path, in bytes.
pub const MAX_PATH_LEN: usize = 500;

/// Characters a path may hold besides ASCII letters and digits (SPIKE's set).
const PATH_PUNCTUATION: &str = "._-/()?+*|[]{}\\";

/// A valid secret path: 1 to [`MAX_PATH_LEN`] bytes of SPIKE's path characters, no `..`
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretPath(String);

/// Why a string is not a secret path. Messages name the rule, never quote the path whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("path is required")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("path is {0} bytes long; the limit is {MAX_PATH_LEN}")]
    TooLong(usize),
    /// The path holds a character outside the allowed set.
    #[error("path contains {0:?}; allowed are letters, digits and ._-/()?+*|[]{{}}\\")]
    Character(char),
    /// A segment is `..`.
    #[error("path must not contain `..` segments")]
    DotDot,
}

impl SecretPath {
    /// Parses `path`.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(path.len()));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || PATH_PUNCTUATION.contains(c);
        if let Some(bad) = path.chars().find(|c| !allowed(*c)) {
            return Err(PathError::Character(bad));
        }
        if path.split('/').any(|segment| segment == "..") {
            return Err(PathError::DotDot);
        }
        Ok(SecretPath(path.to_owned()))
    }

    /// The path as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SecretPath {
    type Err = PathError;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        SecretPath::parse(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in ["db/password", "a", "secrets/db/prod/x-1_2.3", "/leading"] {
            assert_eq!(
                SecretPath::parse(good).map(|p| p.to_string()),
                Ok(good.to_owned())
            );
        }
        for (bad, why) in [
            ("", PathError::Empty),
            ("a b", PathError::Character(' ')),
            ("db/../x", PathError::DotDot),
            ("é", PathError::Character('é')),
            (&"a".repeat(501), PathError::TooLong(501)),
            ("x\n", PathError::Character('\n')),
        ] {
            assert_eq!(SecretPath::parse(bad), Err(why), "{bad:?}");
        }
    }
}
