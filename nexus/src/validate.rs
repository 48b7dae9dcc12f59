//! Input limits, checked at the edge before anything is stored. Messages name the field and
//! the limit, never a value (a value may be a secret).

use nexus_api::model::Values;

/// Longest secret path.
pub const MAX_PATH_LEN: usize = 500;
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

/// A secret path: 1 to 500 of SPIKE's path characters, `..`-free segments.
pub fn path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is required".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "path is {} bytes long; the limit is {MAX_PATH_LEN}",
            path.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/()?+*|[]{}\\".contains(c);
    if let Some(bad) = path.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "path contains {bad:?}; allowed are letters, digits and ._-/()?+*|[]{{}}\\"
        ));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err("path must not contain `..` segments".into());
    }
    Ok(())
}

/// The keys and values of one version.
pub fn values(values: &Values) -> Result<(), String> {
    if values.is_empty() {
        return Err("values must hold at least one key".into());
    }
    if values.len() > MAX_KEYS {
        return Err(format!(
            "{} keys in one secret; the limit is {MAX_KEYS}",
            values.len()
        ));
    }
    let mut total = 0;
    for (key, value) in values {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(format!("keys must be 1 to {MAX_KEY_LEN} bytes long"));
        }
        if let Some(bad) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_. ".contains(*c)))
        {
            return Err(format!(
                "key {key:?} contains {bad:?}; allowed are letters, digits, '-', '_', '.' and space"
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "the value of key {key:?} is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_VERSION_BYTES {
        return Err(format!(
            "the secret is {total} bytes; the limit is {MAX_VERSION_BYTES}"
        ));
    }
    Ok(())
}

/// A list of version numbers.
pub fn versions(versions: &[u64]) -> Result<(), String> {
    if versions.len() > MAX_VERSIONS_PER_CALL {
        return Err(format!(
            "{} versions in one call; the limit is {MAX_VERSIONS_PER_CALL}",
            versions.len()
        ));
    }
    if versions.iter().any(|v| i64::try_from(*v).is_err()) {
        return Err("version numbers must be below 2^63".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for good in ["db/password", "a", "secrets/db/prod/x-1_2.3", "/leading"] {
            assert!(path(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "db/../x", "é", &"a".repeat(501), "x\n"] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_limits_never_echo_the_value() {
        let ok: Values = [("password".to_owned(), "hunter2".to_owned())].into();
        assert!(values(&ok).is_ok());
        assert!(values(&Values::new()).is_err());
        let big: Values = [("k".to_owned(), "s".repeat(MAX_VALUE_BYTES + 1))].into();
        let error = values(&big).expect_err("too big");
        assert!(!error.contains("sss"), "{error}");
        let bad_key: Values = [("a/b".to_owned(), "v".to_owned())].into();
        assert!(values(&bad_key).is_err());
        let many: Values = (0..=MAX_KEYS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(values(&many).is_err());
    }

    #[test]
    fn version_lists() {
        assert!(versions(&[0, 1, 2]).is_ok());
        assert!(versions(&[u64::MAX]).is_err());
        assert!(versions(&vec![1; MAX_VERSIONS_PER_CALL + 1]).is_err());
    }
}
