//! Selectors (`type:value`, e.g. `unix:uid:1000`) as the server and agent share them.
//!
//! A selector's type is everything before the first `:`, its value everything after, so
//! `unix:path:/usr/bin/app` has type `unix` and value `path:/usr/bin/app`, as in SPIRE.

use std::fmt;
use std::str::FromStr;

use crate::server::Selector;

/// Longest selector we accept (type + value), a bound against oversized registration requests.
pub const MAX_SELECTOR_LEN: usize = 1024;

/// Why a selector string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorParseError(pub String);

impl fmt::Display for SelectorParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorParseError {}

impl Selector {
    /// Builds a selector from its type and value, validating both.
    pub fn new(kind: &str, value: &str) -> Result<Self, SelectorParseError> {
        let selector = Selector {
            r#type: kind.to_owned(),
            value: value.to_owned(),
        };
        selector.validate()?;
        Ok(selector)
    }

    /// Checks a selector that arrived over the wire (type and value already split).
    pub fn validate(&self) -> Result<(), SelectorParseError> {
        let raw = format!("{}:{}", self.r#type, self.value);
        if self.r#type.is_empty() {
            return Err(SelectorParseError(format!(
                "selector {raw:?}: type is empty"
            )));
        }
        if !self
            .r#type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SelectorParseError(format!(
                "selector {raw:?}: type may only contain letters, digits, '_' and '-'"
            )));
        }
        if self.value.is_empty() {
            return Err(SelectorParseError(format!(
                "selector {raw:?}: value is empty"
            )));
        }
        if raw.len() > MAX_SELECTOR_LEN {
            return Err(SelectorParseError(format!(
                "selector is {} bytes, longer than the {MAX_SELECTOR_LEN}-byte limit",
                raw.len()
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(SelectorParseError(format!(
                "selector {raw:?}: contains control characters"
            )));
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, value)) = s.split_once(':') else {
            return Err(SelectorParseError(format!(
                "selector {s:?} must have the form type:value, e.g. unix:uid:1000"
            )));
        };
        Selector::new(kind, value)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.r#type, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_colon() {
        let s: Selector = "unix:path:/usr/bin/app".parse().expect("valid selector");
        assert_eq!(s.r#type, "unix");
        assert_eq!(s.value, "path:/usr/bin/app");
        assert_eq!(s.to_string(), "unix:path:/usr/bin/app");
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in ["", "unix", ":uid:1", "unix:", "un ix:uid:1", "unix:uid:\n1"] {
            assert!(
                bad.parse::<Selector>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = format!("unix:path:/{}", "a".repeat(MAX_SELECTOR_LEN));
        assert!(long.parse::<Selector>().is_err());
    }
}
