//! Policy data, validation and compilation.
//!
//! [`Policy`] is the wire/storage shape (SPIKE-compatible field names). It is
//! never consulted directly for access decisions: [`Policy::compile`] checks
//! every field and produces a [`CompiledPolicy`] whose patterns are compiled,
//! size-limited and **anchored** (`^(?:pattern)$`), so a pattern matches the
//! whole SPIFFE ID or path, never a substring of it.

use std::collections::BTreeSet;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::permission::Permission;

/// Longest accepted policy name, in characters.
pub const MAX_NAME_LEN: usize = 250;
/// Longest accepted pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 500;
/// Upper bound on the compiled size of one pattern, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Wire name of the SPIFFE ID pattern field.
const SPIFFE_ID_FIELD: &str = "spiffeidPattern";
/// Wire name of the path pattern field.
const PATH_FIELD: &str = "pathPattern";

/// Why a policy (or policy set) was rejected. Messages start with the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The name is empty or longer than [`MAX_NAME_LEN`].
    #[error("name: must be 1 to {MAX_NAME_LEN} characters long, got {0}")]
    NameLength(usize),
    /// The name contains a character outside `[a-zA-Z0-9 _-]`.
    #[error("name: may only contain letters, digits, spaces, `_` and `-`, found {0:?}")]
    NameCharacter(char),
    /// A pattern is empty.
    #[error("{field}: must not be empty")]
    EmptyPattern {
        /// Wire name of the offending field.
        field: &'static str,
    },
    /// A pattern is longer than [`MAX_PATTERN_LEN`] bytes.
    #[error("{field}: must be at most {MAX_PATTERN_LEN} bytes long, got {len}")]
    PatternTooLong {
        /// Wire name of the offending field.
        field: &'static str,
        /// Actual length in bytes.
        len: usize,
    },
    /// A pattern compiles to more than [`REGEX_SIZE_LIMIT`] bytes.
    #[error("{field}: regex is too complex (compiled size exceeds {REGEX_SIZE_LIMIT} bytes)")]
    PatternTooComplex {
        /// Wire name of the offending field.
        field: &'static str,
    },
    /// A pattern is not a valid regular expression.
    #[error("{field}: invalid regex: {reason}")]
    InvalidPattern {
        /// Wire name of the offending field.
        field: &'static str,
        /// The regex parser's explanation.
        reason: String,
    },
    /// The policy grants nothing.
    #[error("permissions: at least one permission is required")]
    NoPermissions,
    /// A permission string is not one of the known permissions.
    #[error("permissions: unknown permission `{0}` (expected read, write, list, execute or super)")]
    UnknownPermission(String),
    /// The YAML document could not be read or written.
    #[error("yaml: {0}")]
    Yaml(String),
    /// Two policies in one set share a name.
    #[error("name: duplicate policy name `{0}`")]
    DuplicateName(String),
    /// The trust domain given to a policy set is malformed.
    #[error("trust domain: invalid trust domain `{0}`")]
    InvalidTrustDomain(String),
}

/// A policy as stored and sent on the wire (SPIKE-compatible field names).
///
/// Plain data: call [`Policy::compile`] (or build a
/// [`PolicySet`](crate::PolicySet)) before using it for decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Human-readable unique name.
    pub name: String,
    /// Regex the caller's SPIFFE ID must fully match.
    #[serde(rename = "spiffeidPattern")]
    pub spiffe_id_pattern: String,
    /// Regex the secret path must fully match.
    #[serde(rename = "pathPattern")]
    pub path_pattern: String,
    /// Permissions granted when both patterns match.
    pub permissions: BTreeSet<Permission>,
    /// When the policy was created (RFC 3339 on the wire).
    #[serde(
        rename = "createdAt",
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// When the policy was last updated (RFC 3339 on the wire).
    #[serde(
        rename = "updatedAt",
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub updated_at: Option<OffsetDateTime>,
}

/// The YAML file shape accepted by `spike policy apply --file`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: String,
    #[serde(rename = "spiffeidPattern")]
    spiffe_id_pattern: String,
    #[serde(rename = "pathPattern")]
    path_pattern: String,
    permissions: Vec<String>,
}

impl Policy {
    /// A new policy without timestamps. Not validated: see [`Policy::compile`].
    pub fn new(
        name: impl Into<String>,
        spiffe_id_pattern: impl Into<String>,
        path_pattern: impl Into<String>,
        permissions: impl IntoIterator<Item = Permission>,
    ) -> Self {
        Policy {
            name: name.into(),
            spiffe_id_pattern: spiffe_id_pattern.into(),
            path_pattern: path_pattern.into(),
            permissions: permissions.into_iter().collect(),
            created_at: None,
            updated_at: None,
        }
    }

    /// Checks every field and compiles both patterns, anchored.
    pub fn compile(&self) -> Result<CompiledPolicy, PolicyError> {
        validate_name(&self.name)?;
        let spiffe_id = compile_pattern(SPIFFE_ID_FIELD, &self.spiffe_id_pattern)?;
        let path = compile_pattern(PATH_FIELD, &self.path_pattern)?;
        if self.permissions.is_empty() {
            return Err(PolicyError::NoPermissions);
        }
        Ok(CompiledPolicy {
            policy: self.clone(),
            spiffe_id,
            path,
        })
    }

    /// Checks every field without keeping the compiled form.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.compile().map(|_| ())
    }

    /// Reads and validates a policy file (`name`, `spiffeidPattern`,
    /// `pathPattern`, `permissions`); unknown keys are rejected.
    pub fn from_yaml(yaml: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            serde_norway::from_str(yaml).map_err(|e| PolicyError::Yaml(e.to_string()))?;
        let permissions = file
            .permissions
            .iter()
            .map(|p| p.parse::<Permission>())
            .collect::<Result<BTreeSet<_>, _>>()?;
        let policy = Policy {
            name: file.name,
            spiffe_id_pattern: file.spiffe_id_pattern,
            path_pattern: file.path_pattern,
            permissions,
            created_at: None,
            updated_at: None,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Writes the policy in the policy-file shape (timestamps are omitted).
    pub fn to_yaml(&self) -> Result<String, PolicyError> {
        let file = PolicyFile {
            name: self.name.clone(),
            spiffe_id_pattern: self.spiffe_id_pattern.clone(),
            path_pattern: self.path_pattern.clone(),
            permissions: self
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        };
        serde_norway::to_string(&file).map_err(|e| PolicyError::Yaml(e.to_string()))
    }
}

/// A validated policy with anchored, compiled patterns.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: Policy,
    spiffe_id: Regex,
    path: Regex,
}

impl CompiledPolicy {
    /// The policy this was compiled from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// Whether the SPIFFE ID pattern matches the whole of `caller`.
    pub fn matches_caller(&self, caller: &str) -> bool {
        self.spiffe_id.is_match(caller)
    }

    /// Whether the path pattern matches the whole of `path`.
    pub fn matches_path(&self, path: &str) -> bool {
        self.path.is_match(path)
    }

    /// Whether this policy grants `wanted` (directly or through `super`).
    pub fn grants(&self, wanted: Permission) -> bool {
        self.policy.permissions.contains(&wanted)
            || self.policy.permissions.contains(&Permission::Super)
    }
}

impl TryFrom<Policy> for CompiledPolicy {
    type Error = PolicyError;

    fn try_from(policy: Policy) -> Result<Self, Self::Error> {
        policy.compile()
    }
}

/// Checks a policy name: 1 to [`MAX_NAME_LEN`] characters from `[a-zA-Z0-9 _-]`.
pub fn validate_name(name: &str) -> Result<(), PolicyError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME_LEN {
        return Err(PolicyError::NameLength(len));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-')))
    {
        Some(c) => Err(PolicyError::NameCharacter(c)),
        None => Ok(()),
    }
}

fn build(field: &'static str, pattern: &str) -> Result<Regex, PolicyError> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => PolicyError::PatternTooComplex { field },
            other => PolicyError::InvalidPattern {
                field,
                reason: other.to_string(),
            },
        })
}

fn compile_pattern(field: &'static str, pattern: &str) -> Result<Regex, PolicyError> {
    if pattern.is_empty() {
        return Err(PolicyError::EmptyPattern { field });
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(PolicyError::PatternTooLong {
            field,
            len: pattern.len(),
        });
    }
    // Compile the pattern on its own first: otherwise a pattern such as
    // `a)|(.*` would be accepted once wrapped and escape the anchoring.
    build(field, pattern)?;
    build(field, &format!("^(?:{pattern})$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, path: &str) -> Policy {
        Policy::new("test", id, path, [Permission::Read])
    }

    fn err(p: &Policy) -> PolicyError {
        match p.compile() {
            Ok(_) => panic!("policy {p:?} should have been rejected"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_policy_compiles() {
        assert!(
            policy("^spiffe://td/app$", "^secrets/.*$")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn anchoring_denies_prefix_and_suffix_tricks() {
        let c = policy("spiffe://td/app", "secrets/app").compile();
        let c = c.as_ref().ok();
        assert_eq!(c.map(|c| c.matches_caller("spiffe://td/app")), Some(true));
        assert_eq!(
            c.map(|c| c.matches_caller("spiffe://td/app-evil")),
            Some(false)
        );
        assert_eq!(
            c.map(|c| c.matches_caller("spiffe://td/app/x")),
            Some(false)
        );
        assert_eq!(
            c.map(|c| c.matches_caller("x-spiffe://td/app")),
            Some(false)
        );
        assert_eq!(c.map(|c| c.matches_path("secrets/app")), Some(true));
        assert_eq!(c.map(|c| c.matches_path("secrets/apple")), Some(false));
        assert_eq!(c.map(|c| c.matches_path("other/secrets/app")), Some(false));
        assert_eq!(c.map(|c| c.matches_path("secrets/app\n")), Some(false));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let c = policy("spiffe://td/a|spiffe://td/b", "x").compile();
        let c = c.as_ref().ok();
        assert_eq!(c.map(|c| c.matches_caller("spiffe://td/b")), Some(true));
        assert_eq!(
            c.map(|c| c.matches_caller("spiffe://td/a-evil")),
            Some(false)
        );
        assert_eq!(
            c.map(|c| c.matches_caller("evil-spiffe://td/b")),
            Some(false)
        );
    }

    #[test]
    fn group_escape_rejected() {
        let e = err(&policy("spiffe://td/a)|(.*", "x"));
        assert!(matches!(
            e,
            PolicyError::InvalidPattern {
                field: "spiffeidPattern",
                ..
            }
        ));
    }

    #[test]
    fn invalid_regex_names_field() {
        let e = err(&policy("spiffe://td/(", "x"));
        assert!(
            e.to_string().starts_with("spiffeidPattern: invalid regex"),
            "{e}"
        );
        let e = err(&policy("x", "secrets/[a-"));
        assert!(
            e.to_string().starts_with("pathPattern: invalid regex"),
            "{e}"
        );
    }

    #[test]
    fn oversized_pattern_rejected() {
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        let e = err(&policy("x", &long));
        assert_eq!(
            e,
            PolicyError::PatternTooLong {
                field: "pathPattern",
                len: 501
            }
        );
        assert!(policy("x", &"a".repeat(MAX_PATTERN_LEN)).validate().is_ok());
    }

    #[test]
    fn pathological_pattern_rejected() {
        let e = err(&policy("(a{1000}){1000}", "x"));
        assert_eq!(
            e,
            PolicyError::PatternTooComplex {
                field: "spiffeidPattern"
            }
        );
        assert!(e.to_string().contains("too complex"));
    }

    #[test]
    fn empty_pattern_rejected() {
        assert_eq!(
            err(&policy("", "x")),
            PolicyError::EmptyPattern {
                field: "spiffeidPattern"
            }
        );
        assert_eq!(
            err(&policy("x", "")),
            PolicyError::EmptyPattern {
                field: "pathPattern"
            }
        );
    }

    #[test]
    fn bad_name_rejected() {
        let mut p = policy("x", "y");
        p.name = String::new();
        assert_eq!(err(&p), PolicyError::NameLength(0));
        p.name = "a".repeat(251);
        assert_eq!(err(&p), PolicyError::NameLength(251));
        p.name = "a".repeat(250);
        assert!(p.validate().is_ok());
        p.name = "bad/name".into();
        assert_eq!(err(&p), PolicyError::NameCharacter('/'));
        assert!(err(&p).to_string().starts_with("name:"));
        p.name = "Good name_1-2".into();
        assert!(p.validate().is_ok());
    }

    #[test]
    fn no_permissions_rejected() {
        let p = Policy::new("n", "x", "y", []);
        assert_eq!(err(&p), PolicyError::NoPermissions);
    }

    #[test]
    fn super_grants_everything() {
        let c = Policy::new("n", "x", "y", [Permission::Super]).compile();
        for p in Permission::ALL {
            assert_eq!(c.as_ref().ok().map(|c| c.grants(p)), Some(true));
        }
        let c = policy("x", "y").compile();
        assert_eq!(
            c.as_ref().ok().map(|c| c.grants(Permission::Write)),
            Some(false)
        );
    }

    #[test]
    fn json_wire_names() {
        let p = Policy::new("n", "x", "y", [Permission::Write, Permission::Read]);
        let json = serde_json::to_value(&p).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({
                "name": "n",
                "spiffeidPattern": "x",
                "pathPattern": "y",
                "permissions": ["read", "write"],
            }))
        );
        let back: Option<Policy> = json.and_then(|j| serde_json::from_value(j).ok());
        assert_eq!(back, Some(p));
    }

    #[test]
    fn json_timestamps_rfc3339() {
        let json = r#"{"name":"n","spiffeidPattern":"x","pathPattern":"y",
            "permissions":["list"],"createdAt":"2025-01-02T03:04:05.123456789Z"}"#;
        let p: Option<Policy> = serde_json::from_str(json).ok();
        assert_eq!(
            p.as_ref().and_then(|p| p.created_at).map(|t| t.year()),
            Some(2025)
        );
        assert_eq!(p.and_then(|p| p.updated_at), None);
        let bad = r#"{"name":"n","spiffeidPattern":"x","pathPattern":"y","permissions":["root"]}"#;
        assert!(serde_json::from_str::<Policy>(bad).is_err());
    }

    #[test]
    fn yaml_round_trip() {
        let p = Policy::new(
            "billing-read",
            r"^spiffe://spike\.ist/app/billing$",
            "^secrets/billing/.*$",
            [Permission::Read, Permission::List],
        );
        let yaml = p.to_yaml();
        let back = yaml
            .as_deref()
            .map_err(Clone::clone)
            .and_then(Policy::from_yaml);
        assert_eq!(back, Ok(p));
    }

    #[test]
    fn yaml_unknown_key_rejected() {
        let yaml = "name: a\nspiffeidPattern: x\npathPattern: y\npermissions: [read]\nextra: 1\n";
        let e = Policy::from_yaml(yaml);
        assert!(
            matches!(&e, Err(PolicyError::Yaml(m)) if m.contains("extra")),
            "{e:?}"
        );
    }

    #[test]
    fn yaml_unknown_permission_rejected() {
        let yaml = "name: a\nspiffeidPattern: x\npathPattern: y\npermissions: [read, admin]\n";
        assert_eq!(
            Policy::from_yaml(yaml),
            Err(PolicyError::UnknownPermission("admin".into()))
        );
    }

    #[test]
    fn yaml_is_validated() {
        let yaml = "name: a\nspiffeidPattern: '('\npathPattern: y\npermissions: [read]\n";
        assert!(matches!(
            Policy::from_yaml(yaml),
            Err(PolicyError::InvalidPattern {
                field: "spiffeidPattern",
                ..
            })
        ));
    }

    #[test]
    fn example_files_compile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("examples dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read example");
            let policy =
                Policy::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(policy.compile().is_ok(), "{}", path.display());
            count += 1;
        }
        assert!(count >= 2, "expected example policies in {}", dir.display());
    }
}
