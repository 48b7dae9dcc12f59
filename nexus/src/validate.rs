//! Input limits on what a secret holds and on the size of a request, checked at the edge
//! before anything is stored. Messages name the field and the limit, never a value (a value
//! may be a secret). Paths are parsed into [`crate::secrets::SecretPath`], policy names into
//! [`crate::policy::PolicyName`].

use std::collections::BTreeMap;
use std::time::Duration;

use nexus_api::model::{DurationValue, Values};

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

/// Most keys in a secret's custom metadata (Vault's limit).
pub const MAX_CUSTOM_METADATA_KEYS: usize = 64;
/// Longest custom metadata key, in bytes (Vault's limit).
pub const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
/// Longest custom metadata value, in bytes (Vault's limit).
pub const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;
/// Most versions a secret may keep.
pub const MAX_MAX_VERSIONS: i64 = 1_000_000;
/// Longest `delete_version_after` (100 years): longer is taken for a mistake.
pub const MAX_DELETE_VERSION_AFTER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Largest page of a secret listing.
pub const MAX_LIST_LIMIT: i64 = 1000;

/// Why a metadata update or a listing's parameters are refused. Custom metadata is not
/// secret, so keys may be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// `maxVersions` out of range.
    #[error("maxVersions is {0}; it must be 0 (Nexus's default) to {MAX_MAX_VERSIONS}")]
    MaxVersions(i64),
    /// `deleteVersionAfter` does not parse.
    #[error(
        "deleteVersionAfter {0:?} is not a duration; write e.g. 30m, 1h, 1h 30m, 0s (never) or a number of seconds"
    )]
    Duration(String),
    /// `deleteVersionAfter` is negative.
    #[error("deleteVersionAfter must not be negative")]
    NegativeDuration,
    /// `deleteVersionAfter` is over the limit.
    #[error("deleteVersionAfter is over the limit of 100 years")]
    DurationTooLong,
    /// More than [`MAX_CUSTOM_METADATA_KEYS`] keys.
    #[error("customMetadata has {0} keys; the limit is {MAX_CUSTOM_METADATA_KEYS}")]
    TooManyKeys(usize),
    /// A key is empty or too long.
    #[error(
        "customMetadata keys must be 1 to {MAX_CUSTOM_METADATA_KEY_LEN} bytes long; one is {0} bytes"
    )]
    KeyLength(usize),
    /// A value is too long.
    #[error(
        "customMetadata value of key {key:?} is {len} bytes; the limit is {MAX_CUSTOM_METADATA_VALUE_LEN}"
    )]
    ValueLength {
        /// The key.
        key: String,
        /// The value's length.
        len: usize,
    },
    /// A list page size out of range.
    #[error("limit is {0}; it must be 1 to {MAX_LIST_LIMIT}")]
    ListLimit(i64),
}

/// `maxVersions` of a metadata update: 0 means Nexus's default.
pub fn max_versions(value: i64) -> Result<u32, MetadataError> {
    if !(0..=MAX_MAX_VERSIONS).contains(&value) {
        return Err(MetadataError::MaxVersions(value));
    }
    u32::try_from(value).map_err(|_| MetadataError::MaxVersions(value))
}

/// `deleteVersionAfter`: seconds, or text as `humantime` reads it (`1h30m`, `90s`).
pub fn delete_version_after(value: &DurationValue) -> Result<Duration, MetadataError> {
    let duration = match value {
        DurationValue::Seconds(seconds) => {
            let seconds = u64::try_from(*seconds).map_err(|_| MetadataError::NegativeDuration)?;
            Duration::from_secs(seconds)
        }
        DurationValue::Text(text) => {
            let trimmed = text.trim();
            if trimmed.starts_with('-') {
                return Err(MetadataError::NegativeDuration);
            }
            match trimmed.parse::<u64>() {
                Ok(seconds) => Duration::from_secs(seconds),
                Err(_) => humantime::parse_duration(trimmed)
                    .map_err(|_| MetadataError::Duration(text.chars().take(40).collect()))?,
            }
        }
    };
    if duration > MAX_DELETE_VERSION_AFTER {
        return Err(MetadataError::DurationTooLong);
    }
    Ok(duration)
}

/// Custom metadata: at most 64 keys of 1 to 128 bytes, values of up to 512 bytes.
pub fn custom_metadata(map: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    if map.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(MetadataError::TooManyKeys(map.len()));
    }
    for (key, value) in map {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            return Err(MetadataError::KeyLength(key.len()));
        }
        if value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            return Err(MetadataError::ValueLength {
                key: key.clone(),
                len: value.len(),
            });
        }
    }
    Ok(())
}

/// A listing's page size.
pub fn list_limit(limit: i64) -> Result<usize, MetadataError> {
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(MetadataError::ListLimit(limit));
    }
    usize::try_from(limit).map_err(|_| MetadataError::ListLimit(limit))
}

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
    fn metadata_limits() {
        assert_eq!(max_versions(0), Ok(0));
        assert_eq!(max_versions(5), Ok(5));
        assert_eq!(max_versions(-1), Err(MetadataError::MaxVersions(-1)));
        let text = |t: &str| delete_version_after(&DurationValue::Text(t.into()));
        assert_eq!(text("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(text("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(text("90"), Ok(Duration::from_secs(90)));
        assert_eq!(text("0s"), Ok(Duration::ZERO));
        assert_eq!(text("-1h"), Err(MetadataError::NegativeDuration));
        assert_eq!(text("soon"), Err(MetadataError::Duration("soon".into())));
        assert_eq!(text("1000000h"), Err(MetadataError::DurationTooLong));
        assert_eq!(
            delete_version_after(&DurationValue::Seconds(-5)),
            Err(MetadataError::NegativeDuration)
        );
        let many: BTreeMap<String, String> = (0..=MAX_CUSTOM_METADATA_KEYS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert_eq!(custom_metadata(&many), Err(MetadataError::TooManyKeys(65)));
        let long_key = BTreeMap::from([("k".repeat(129), String::new())]);
        assert_eq!(
            custom_metadata(&long_key),
            Err(MetadataError::KeyLength(129))
        );
        let long_value = BTreeMap::from([("k".to_owned(), "v".repeat(513))]);
        assert!(matches!(
            custom_metadata(&long_value),
            Err(MetadataError::ValueLength { len: 513, .. })
        ));
        assert_eq!(list_limit(0), Err(MetadataError::ListLimit(0)));
        assert_eq!(list_limit(1000), Ok(1000));
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
