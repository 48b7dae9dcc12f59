//! Input limits on what a secret holds and on the size of a request, checked at the edge
//! before anything is stored. Messages name the field and the limit, never a value (a value
//! may be a secret). Paths are parsed into [`crate::secrets::SecretPath`], policy names into
//! [`crate::policy::PolicyName`].

use nexus_api::model::Values;

/// Longest key inside a secret.
pub const MAX_KEY_LEN: usize = 250;
/// Largest single value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys in one version.
pub const MAX_KEYS: usize = 256;
/// Largest version (keys and values together).
pub const MAX_VERSION_BYTES: usize = 512 * 1024;
/// Largest request body; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most versions named in one delete/undelete/destroy call.
pub const MAX_VERSIONS_PER_CALL: usize = 1000;

/// Why the keys and values of a version are refused. Keys may be named (they are not
/// secret); values never are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValuesError {
    /// No key at all.
    #[error("values must hold at least one key")]
    Empty,
    /// More than [`MAX_KEYS`] keys.
    #[error("{0} keys in one secret; the limit is {MAX_KEYS}")]
    TooManyKeys(usize),
    /// A key is empty or longer than [`MAX_KEY_LEN`].
    #[error("keys must be 1 to {MAX_KEY_LEN} bytes long")]
    KeyLength,
    /// A key holds a character outside the allowed set.
    #[error(
        "key {key:?} contains {character:?}; allowed are letters, digits, '-', '_', '.' and space"
    )]
    KeyCharacter {
        /// The key.
        key: String,
        /// The first character not allowed.
        character: char,
    },
    /// A value is larger than [`MAX_VALUE_BYTES`].
    #[error("the value of key {key:?} is {len} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge {
        /// The key whose value it is.
        key: String,
        /// The value's length.
        len: usize,
    },
    /// Keys and values together are larger than [`MAX_VERSION_BYTES`].
    #[error("the secret is {0} bytes; the limit is {MAX_VERSION_BYTES}")]
    TooLarge(usize),
}

/// Why a list of version numbers is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionsError {
    /// More than [`MAX_VERSIONS_PER_CALL`] versions.
    #[error("{0} versions in one call; the limit is {MAX_VERSIONS_PER_CALL}")]
    TooMany(usize),
    /// A number the datastore cannot hold.
    #[error("version numbers must be below 2^63")]
    TooBig,
}

/// The keys and values of one version.
pub fn values(values: &Values) -> Result<(), ValuesError> {
    if values.is_empty() {
        return Err(ValuesError::Empty);
    }
    if values.len() > MAX_KEYS {
        return Err(ValuesError::TooManyKeys(values.len()));
    }
    let mut total = 0;
    for (key, value) in values {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(ValuesError::KeyLength);
        }
        if let Some(character) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_. ".contains(*c)))
        {
            return Err(ValuesError::KeyCharacter {
                key: key.clone(),
                character,
            });
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(ValuesError::ValueTooLarge {
                key: key.clone(),
                len: value.len(),
            });
        }
        total += key.len() + value.len();
    }
    if total > MAX_VERSION_BYTES {
        return Err(ValuesError::TooLarge(total));
    }
    Ok(())
}

/// A list of version numbers.
pub fn versions(versions: &[u64]) -> Result<(), VersionsError> {
    if versions.len() > MAX_VERSIONS_PER_CALL {
        return Err(VersionsError::TooMany(versions.len()));
    }
    if versions.iter().any(|v| i64::try_from(*v).is_err()) {
        return Err(VersionsError::TooBig);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_limits_never_echo_the_value() {
        let ok: Values = [("password".to_owned(), "hunter2".to_owned())].into();
        assert!(values(&ok).is_ok());
        assert_eq!(values(&Values::new()), Err(ValuesError::Empty));
        let big: Values = [("k".to_owned(), "s".repeat(MAX_VALUE_BYTES + 1))].into();
        let error = values(&big).expect_err("too big").to_string();
        assert!(!error.contains("sss"), "{error}");
        let bad_key: Values = [("a/b".to_owned(), "v".to_owned())].into();
        assert!(matches!(
            values(&bad_key),
            Err(ValuesError::KeyCharacter { character: '/', .. })
        ));
        let many: Values = (0..=MAX_KEYS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(values(&many), Err(ValuesError::TooManyKeys(MAX_KEYS + 1)));
    }

    #[test]
    fn version_lists() {
        assert!(versions(&[0, 1, 2]).is_ok());
        assert_eq!(versions(&[u64::MAX]), Err(VersionsError::TooBig));
        assert_eq!(
            versions(&vec![1; MAX_VERSIONS_PER_CALL + 1]),
            Err(VersionsError::TooMany(MAX_VERSIONS_PER_CALL + 1))
        );
    }
}
