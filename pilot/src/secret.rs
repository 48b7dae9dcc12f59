//! `spike secret put|get|patch|list|delete|undelete|destroy`.
//!
//! Each command first does everything that needs no network (pairs, files, stdin,
//! confirmation), so a mistake fails before Nexus is called, then makes one call and renders
//! the answer with a pure function.

use std::io::IsTerminal;

use nexus_api::model::{ListSecretsRequest, Values};
use serde::Serialize;

use crate::cli::{
    DestroyArgs, GetArgs, GlobalArgs, ListArgs, PutArgs, SecretCommand, VersionsArgs,
};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::input::{self, confirm_at_terminal, parse_pairs, read_values};
use crate::output::{Format, Output, structured};

/// Runs a `spike secret` command.
pub async fn run(command: SecretCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    match command {
        SecretCommand::Put(args) => put(args, global).await,
        SecretCommand::Get(args) => get(args, global).await,
        SecretCommand::Patch(args) => patch(args, global).await,
        SecretCommand::List(args) => list(args, global).await,
        SecretCommand::Delete(args) => change(Change::Delete, args, global).await,
        SecretCommand::Undelete(args) => change(Change::Undelete, args, global).await,
        SecretCommand::Destroy(args) => destroy(args, global).await,
        SecretCommand::Metadata(command) => crate::metadata::run(command, global).await,
    }
}

/// The values `args` names: `k=v`, `k=@file`, or `k=-` read from the terminal (hidden) or a
/// pipe.
fn values_of(args: &PutArgs) -> Result<Values, PilotError> {
    let pairs = parse_pairs(&args.pairs)?;
    let values = read_values(pairs, |key| {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            input::read_hidden(key)
        } else {
            input::read_piped(key, &mut stdin.lock())
        }
    })?;
    Ok(values)
}

async fn put(args: PutArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let values = values_of(&args)?;
    let session = Session::connect(global).await?;
    let path = args.path.as_str();
    let version = session
        .client()
        .put_secret(path, values, args.cas)
        .await
        .map_err(session.fail(Operation::PutSecret { path }))?;
    Ok(Output::ok(render_put(path, version, global.format)))
}

async fn patch(args: PutArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let values = values_of(&args)?;
    let session = Session::connect(global).await?;
    let path = args.path.as_str();
    let version = session
        .client()
        .patch_secret(path, values, args.cas)
        .await
        .map_err(session.fail(Operation::PutSecret { path }))?;
    Ok(Output::ok(render_put(path, version, global.format)))
}

async fn get(args: GetArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let path = args.path.as_str();
    let secret = session
        .client()
        .get_secret(path, args.version)
        .await
        .map_err(session.fail(Operation::GetSecret {
            path,
            version: args.version,
        }))?;
    render_get(path, &secret.data, args.key.as_deref(), global.format).map(Output::ok)
}

async fn list(args: ListArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    // Nexus filters by prefix and pages; every page is fetched.
    let mut request = ListSecretsRequest {
        prefix: args.prefix.filter(|p| !p.is_empty()),
        limit: Some(args.page_size),
        cursor: None,
    };
    let mut paths = Vec::new();
    loop {
        let page = session
            .client()
            .list_secrets_page(&request)
            .await
            .map_err(session.fail(Operation::ListSecrets))?;
        paths.extend(page.keys);
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(Output::ok(render_list(&paths, global.format)))
}

/// A change to versions of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Soft delete.
    Delete,
    /// Undo a soft delete.
    Undelete,
    /// Permanent.
    Destroy,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Delete => "delete",
            Change::Undelete => "undelete",
            Change::Destroy => "destroy",
        }
    }
}

async fn change(
    change: Change,
    args: VersionsArgs,
    global: &GlobalArgs,
) -> Result<Output, PilotError> {
    let versions = args.versions.map(|v| v.0).unwrap_or_default();
    apply_change(change, &args.path, &versions, global).await
}

async fn destroy(args: DestroyArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let versions = args.versions.map(|v| v.0).unwrap_or_default();
    if versions.is_empty() && !args.yes {
        let question = format!(
            "Destroy secret `{}`: every version and its metadata, for good?",
            args.path
        );
        confirm_at_terminal(&question)?;
    }
    apply_change(Change::Destroy, &args.path, &versions, global).await
}

async fn apply_change(
    change: Change,
    path: &str,
    versions: &[u64],
    global: &GlobalArgs,
) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let client = session.client();
    let failed = session.fail(Operation::ChangeVersions { path });
    match change {
        Change::Delete => client.delete_secret(path, versions).await,
        Change::Undelete => client.undelete_secret(path, versions).await,
        Change::Destroy => client.destroy_secret(path, versions).await,
    }
    .map_err(failed)?;
    Ok(Output::ok(render_change(
        change,
        path,
        versions,
        global.format,
    )))
}

/// `put`: `OK (version N)`, or `{path, version}`.
pub fn render_put(path: &str, version: u64, format: Format) -> String {
    #[derive(Serialize)]
    struct Written<'a> {
        path: &'a str,
        version: u64,
    }
    structured(&Written { path, version }, format)
        .unwrap_or_else(|| format!("OK (version {version})\n"))
}

/// `get`: sorted `key: value` lines or the map; with `key`, its bare value. A missing key is
/// an error that lists the keys there are (never a value).
pub fn render_get(
    path: &str,
    values: &Values,
    key: Option<&str>,
    format: Format,
) -> Result<String, PilotError> {
    let Some(key) = key else {
        return Ok(structured(values, format)
            .unwrap_or_else(|| values.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()));
    };
    let Some(value) = values.get(key) else {
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        return Err(PilotError::Refused(format!(
            "Key `{key}` not found in secret {path}; its keys are: {}",
            if keys.is_empty() {
                "(none)".to_owned()
            } else {
                keys.join(", ")
            }
        )));
    };
    Ok(structured(value, format).unwrap_or_else(|| format!("{value}\n")))
}

/// `list`: `- path` lines or `No secrets found.`; the array for scripts.
pub fn render_list(paths: &[String], format: Format) -> String {
    structured(paths, format).unwrap_or_else(|| {
        if paths.is_empty() {
            "No secrets found.\n".to_owned()
        } else {
            paths.iter().map(|p| format!("- {p}\n")).collect()
        }
    })
}

/// `delete|undelete|destroy`: `OK`, or `{action, path, versions}` (empty versions: the
/// current one, or for destroy the whole secret).
pub fn render_change(change: Change, path: &str, versions: &[u64], format: Format) -> String {
    #[derive(Serialize)]
    struct Changed<'a> {
        action: &'a str,
        path: &'a str,
        versions: &'a [u64],
    }
    let changed = Changed {
        action: change.as_str(),
        path,
        versions,
    };
    structured(&changed, format).unwrap_or_else(|| "OK\n".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        [("user", "app"), ("password", "hunter2")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn yaml(text: &str) -> serde_json::Value {
        serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"))
    }

    #[test]
    fn put_output() {
        assert_eq!(render_put("db", 3, Format::Human), "OK (version 3)\n");
        let want = serde_json::json!({"path": "db", "version": 3});
        assert_eq!(json(&render_put("db", 3, Format::Json)), want);
        assert_eq!(yaml(&render_put("db", 3, Format::Yaml)), want);
    }

    #[test]
    fn get_output() {
        let v = values();
        let human = render_get("db", &v, None, Format::Human).ok();
        assert_eq!(human.as_deref(), Some("password: hunter2\nuser: app\n"));
        let want = serde_json::json!({"user": "app", "password": "hunter2"});
        let text = render_get("db", &v, None, Format::Json).unwrap_or_default();
        assert_eq!(json(&text), want);
        let text = render_get("db", &v, None, Format::Yaml).unwrap_or_default();
        assert_eq!(yaml(&text), want);

        let one = |f| render_get("db", &v, Some("password"), f).unwrap_or_default();
        assert_eq!(one(Format::Human), "hunter2\n");
        assert_eq!(json(&one(Format::Json)), serde_json::json!("hunter2"));
        assert_eq!(yaml(&one(Format::Yaml)), serde_json::json!("hunter2"));
    }

    #[test]
    fn get_missing_key_lists_keys_not_values() {
        let err = render_get("db", &values(), Some("token"), Format::Human)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "Key `token` not found in secret db; its keys are: password, user"
        );
        assert!(!err.contains("hunter2"));
        let empty = render_get("db", &Values::new(), Some("k"), Format::Human)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(empty.ends_with("(none)"), "{empty}");
    }

    #[test]
    fn list_output() {
        let paths = vec!["a/1".to_owned(), "b/2".to_owned()];
        assert_eq!(render_list(&paths, Format::Human), "- a/1\n- b/2\n");
        assert_eq!(render_list(&[], Format::Human), "No secrets found.\n");
        let want = serde_json::json!(["a/1", "b/2"]);
        assert_eq!(json(&render_list(&paths, Format::Json)), want);
        assert_eq!(yaml(&render_list(&paths, Format::Yaml)), want);
        assert_eq!(json(&render_list(&[], Format::Json)), serde_json::json!([]));
        assert_eq!(yaml(&render_list(&[], Format::Yaml)), serde_json::json!([]));
    }

    #[test]
    fn change_output() {
        for change in [Change::Delete, Change::Undelete, Change::Destroy] {
            assert_eq!(render_change(change, "db", &[1, 2], Format::Human), "OK\n");
        }
        let want = serde_json::json!({"action": "delete", "path": "db", "versions": [1, 2]});
        assert_eq!(
            json(&render_change(Change::Delete, "db", &[1, 2], Format::Json)),
            want
        );
        let want = serde_json::json!({"action": "destroy", "path": "db", "versions": []});
        assert_eq!(
            yaml(&render_change(Change::Destroy, "db", &[], Format::Yaml)),
            want
        );
    }
}
