//! Reading the current version of several secrets for `spike exec` and `spike render`: each
//! path is fetched once (so all keys of one path come from the same version), then values
//! are picked by key. Errors name paths and keys, never values.

use std::collections::{BTreeMap, BTreeSet};

use nexus_api::model::Values;

use crate::context::Session;
use crate::error::{Operation, PilotError};

/// The current values of some secrets, by path.
pub struct Secrets(BTreeMap<String, Values>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(path, values)| (path, values.keys())))
            .finish()
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        for values in self.0.values_mut() {
            for value in values.values_mut() {
                zeroize::Zeroize::zeroize(value);
            }
        }
    }
}

impl Secrets {
    /// Fetches the current version of every path, stopping at the first failure.
    pub async fn fetch(session: &Session, paths: &BTreeSet<&str>) -> Result<Self, PilotError> {
        let mut secrets = Secrets(BTreeMap::new());
        for &path in paths {
            let answer = session
                .client()
                .get_secret(path, 0)
                .await
                .map_err(session.fail(Operation::GetSecret { path, version: 0 }))?;
            secrets.0.insert(path.to_owned(), answer.data);
        }
        Ok(secrets)
    }

    /// The value of `key` in the secret at `path`; without a key, the secret must hold
    /// exactly one.
    pub fn value(&self, path: &str, key: Option<&str>) -> Result<&str, PilotError> {
        let values = self.0.get(path).ok_or_else(|| {
            // Only reachable if a caller asks for a path it did not fetch.
            PilotError::Refused(format!("Secret {path} was not fetched"))
        })?;
        pick(path, values, key)
    }
}

#[cfg(test)]
impl From<BTreeMap<String, Values>> for Secrets {
    fn from(map: BTreeMap<String, Values>) -> Self {
        Secrets(map)
    }
}

/// The value of `key` in `values`, or the only value when `key` is `None`.
pub fn pick<'v>(path: &str, values: &'v Values, key: Option<&str>) -> Result<&'v str, PilotError> {
    let keys = || {
        if values.is_empty() {
            "(none)".to_owned()
        } else {
            values
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match key {
        Some(key) => values.get(key).map(String::as_str).ok_or_else(|| {
            PilotError::Refused(format!(
                "Key `{key}` not found in secret {path}; its keys are: {}",
                keys()
            ))
        }),
        None => match values.values().next() {
            Some(value) if values.len() == 1 => Ok(value),
            _ => Err(PilotError::Refused(format!(
                "Secret {path} has {} keys, so name one (PATH:KEY); its keys are: {}",
                values.len(),
                keys()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn message(result: Result<&str, PilotError>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn picks_by_key_or_the_only_one() {
        let two = values(&[("user", "app"), ("password", "hunter2")]);
        assert_eq!(pick("db", &two, Some("user")).ok(), Some("app"));
        let one = values(&[("token", "t0k")]);
        assert_eq!(pick("api", &one, None).ok(), Some("t0k"));
        assert_eq!(pick("api", &one, Some("token")).ok(), Some("t0k"));
    }

    #[test]
    fn errors_list_keys_never_values() {
        let two = values(&[("user", "app"), ("password", "hunter2")]);
        let text = message(pick("db", &two, None));
        assert_eq!(
            text,
            "Secret db has 2 keys, so name one (PATH:KEY); its keys are: password, user"
        );
        let text = message(pick("db", &two, Some("pw")));
        assert_eq!(
            text,
            "Key `pw` not found in secret db; its keys are: password, user"
        );
        let text = message(pick("db", &Values::new(), None));
        assert!(
            text.contains("0 keys") && text.ends_with("(none)"),
            "{text}"
        );
        for text in [
            message(pick("db", &two, None)),
            message(pick("db", &two, Some("x"))),
        ] {
            assert!(
                !text.contains("hunter2") && !text.contains("app,"),
                "{text}"
            );
        }
    }

    #[test]
    fn secrets_debug_shows_keys_only() {
        let secrets = Secrets::from(BTreeMap::from([(
            "db".to_owned(),
            values(&[("password", "hunter2")]),
        )]));
        let debug = format!("{secrets:?}");
        assert!(
            debug.contains("password") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert_eq!(secrets.value("db", None).ok(), Some("hunter2"));
        assert!(secrets.value("other", None).is_err());
    }
}
