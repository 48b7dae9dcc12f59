//! `spike exec`: secrets for programs that only read their environment.
//!
//! Every `--secret PATH[:KEY]=ENV` is fetched with this process's own SVID before anything
//! runs; only when all of them are in does spike replace itself with the command
//! (`execve`), so the command gets spike's PID, its signals and its exit code, and no spike
//! process stays around holding the values. Any failure means no command is started.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::str::FromStr;

use crate::cli::{ExecArgs, GlobalArgs};
use crate::context::Session;
use crate::error::PilotError;
use crate::fetch::Secrets;
use crate::input::InputError;
use crate::output::Output;

/// Exit code when the command cannot be run, as shells use for "command not found".
pub const CANNOT_RUN: u8 = 127;

/// One `--secret PATH[:KEY]=ENV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretBinding {
    /// Secret path.
    pub path: String,
    /// Key in the secret; `None`: the secret's only key.
    pub key: Option<String>,
    /// Environment variable to set.
    pub env: String,
}

/// Why a `--secret` value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// No `=ENV`.
    #[error("`{0}` has no `=ENV` (expected PATH[:KEY]=ENV, e.g. db/creds:password=DB_PASSWORD)")]
    NoEnv(String),
    /// Empty path, or an empty key after `:`.
    #[error("`{0}` has an empty path or key (expected PATH[:KEY]=ENV)")]
    Empty(String),
    /// The variable name is not a portable one.
    #[error(
        "`{0}` is not a valid environment variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadEnv(String),
}

impl FromStr for SecretBinding {
    type Err = BindingError;

    /// Secret paths and keys never contain `=` or `:`, so the last `=` starts the variable
    /// name and the first `:` starts the key.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (source, env) = text
            .rsplit_once('=')
            .ok_or_else(|| BindingError::NoEnv(text.to_owned()))?;
        if !is_env_name(env) {
            return Err(BindingError::BadEnv(env.to_owned()));
        }
        let (path, key) = match source.split_once(':') {
            Some((path, key)) => (path, Some(key)),
            None => (source, None),
        };
        if path.is_empty() || key.is_some_and(str::is_empty) {
            return Err(BindingError::Empty(text.to_owned()));
        }
        Ok(SecretBinding {
            path: path.to_owned(),
            key: key.map(str::to_owned),
            env: env.to_owned(),
        })
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Runs `spike exec`: returns only if something failed.
pub async fn run(args: ExecArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    check_unique(&args.secrets)?;
    let Some((program, program_args)) = args.command.split_first() else {
        // clap requires the command; this only guards the invariant.
        return Err(PilotError::Exec("No command to run was given".into()));
    };
    let session = Session::connect(global).await?;
    let paths: BTreeSet<&str> = args.secrets.iter().map(|b| b.path.as_str()).collect();
    let secrets = Secrets::fetch(&session, &paths).await?;
    let environment = environment(&args.secrets, &secrets)?;
    let mut command = Command::new(program);
    command.args(program_args).envs(environment);
    // Only returns on failure; on success this process is the command now.
    let error = command.exec();
    Err(PilotError::Exec(format!(
        "Cannot run `{}`: {error}. Nothing was started.",
        program.to_string_lossy()
    )))
}

/// Refuses two bindings for one variable: the second would silently win.
pub fn check_unique(bindings: &[SecretBinding]) -> Result<(), InputError> {
    let mut seen = BTreeSet::new();
    match bindings.iter().find(|b| !seen.insert(b.env.as_str())) {
        Some(b) => Err(InputError::DuplicateEnv(b.env.clone())),
        None => Ok(()),
    }
}

/// The variables to set, `(ENV, value)`, in the order given.
pub fn environment<'s>(
    bindings: &[SecretBinding],
    secrets: &'s Secrets,
) -> Result<Vec<(OsString, &'s str)>, PilotError> {
    bindings
        .iter()
        .map(|b| {
            let value = secrets.value(&b.path, b.key.as_deref())?;
            if value.contains('\0') {
                return Err(PilotError::Refused(format!(
                    "The value for {} (secret {}{}) contains a NUL byte, which an environment variable cannot hold",
                    b.env,
                    b.path,
                    b.key.as_deref().map(|k| format!(", key {k}")).unwrap_or_default()
                )));
            }
            Ok((OsString::from(&b.env), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nexus_api::model::Values;

    use super::*;

    fn binding(text: &str) -> Result<SecretBinding, BindingError> {
        text.parse()
    }

    #[test]
    fn bindings_parse() {
        assert_eq!(
            binding("db/creds:password=DB_PASSWORD"),
            Ok(SecretBinding {
                path: "db/creds".into(),
                key: Some("password".into()),
                env: "DB_PASSWORD".into(),
            })
        );
        assert_eq!(
            binding("api/token=_T0"),
            Ok(SecretBinding {
                path: "api/token".into(),
                key: None,
                env: "_T0".into(),
            })
        );
        assert_eq!(
            binding("a:key with space=X").map(|b| b.key),
            Ok(Some("key with space".into()))
        );
    }

    #[test]
    fn bad_bindings_are_refused() {
        assert_eq!(
            binding("db/creds"),
            Err(BindingError::NoEnv("db/creds".into()))
        );
        for bad in ["", "1X", "A-B", "A B", "É", "a.b"] {
            assert_eq!(
                binding(&format!("p={bad}")),
                Err(BindingError::BadEnv(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(binding("=X"), Err(BindingError::Empty("=X".into())));
        assert_eq!(binding(":k=X"), Err(BindingError::Empty(":k=X".into())));
        assert_eq!(binding("p:=X"), Err(BindingError::Empty("p:=X".into())));
        let text = BindingError::BadEnv("1X".into()).to_string();
        assert!(
            text.contains("not a valid environment variable name"),
            "{text}"
        );
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "a_b9", "PATH", "_1"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "9", "a-b", "a=b", "ä"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn one_binding_per_variable() {
        let list = |items: &[&str]| -> Vec<SecretBinding> {
            items
                .iter()
                .map(|s| s.parse().expect("valid binding"))
                .collect()
        };
        assert_eq!(check_unique(&list(&["a=X", "b=Y", "a:k=Z"])), Ok(()));
        assert_eq!(
            check_unique(&list(&["a=X", "b=X"])),
            Err(InputError::DuplicateEnv("X".into()))
        );
    }

    fn secrets() -> Secrets {
        let values = |pairs: &[(&str, &str)]| -> Values {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Secrets::from(BTreeMap::from([
            (
                "db".to_owned(),
                values(&[("user", "app"), ("password", "hunter2")]),
            ),
            ("token".to_owned(), values(&[("value", "t0k")])),
            ("nul".to_owned(), values(&[("v", "a\0b")])),
        ]))
    }

    #[test]
    fn environment_from_secrets() {
        let secrets = secrets();
        let bindings: Vec<SecretBinding> = ["db:password=PW", "db:user=USER", "token=TOKEN"]
            .iter()
            .map(|s| s.parse().expect("valid binding"))
            .collect();
        let env = environment(&bindings, &secrets).expect("all there");
        assert_eq!(
            env,
            [
                (OsString::from("PW"), "hunter2"),
                (OsString::from("USER"), "app"),
                (OsString::from("TOKEN"), "t0k"),
            ]
        );
    }

    #[test]
    fn environment_errors_name_keys_not_values() {
        let secrets = secrets();
        let fail = |text: &str| {
            let binding: SecretBinding = text.parse().expect("valid binding");
            environment(&[binding], &secrets)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let text = fail("db=X");
        assert!(text.contains("its keys are: password, user"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let text = fail("db:pw=X");
        assert!(text.contains("Key `pw` not found in secret db"), "{text}");
        let text = fail("nul=X");
        assert!(
            text.contains("NUL byte") && !text.contains("a\0b"),
            "{text}"
        );
    }
}
