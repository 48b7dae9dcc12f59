//! `spike secret metadata get|put|delete`: a secret's settings (Vault's `max_versions`,
//! `cas_required`, `delete_version_after`, `custom_metadata`), its versions, when they were
//! written and deleted, and by whom.

use std::collections::BTreeMap;

use nexus_api::model::{DurationValue, MetadataResponse, PutMetadataRequest};
use serde::Serialize;

use crate::cli::{GlobalArgs, MetadataCommand, MetadataDeleteArgs, MetadataPutArgs};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::input::{InputError, confirm_at_terminal};
use crate::output::{Format, Output, structured, time};

/// Runs a `spike secret metadata` command.
pub async fn run(command: MetadataCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    let args = match command {
        MetadataCommand::Get(args) => args,
        MetadataCommand::Put(args) => return put(args, global).await,
        MetadataCommand::Delete(args) => return delete(args, global).await,
    };
    let session = Session::connect(global).await?;
    let path = args.path.as_str();
    let metadata = session
        .client()
        .secret_metadata(path)
        .await
        .map_err(session.fail(Operation::SecretMetadata { path }))?;
    let metadata = only_version(metadata, path, args.version)?;
    Ok(Output::ok(render(&metadata, global.format)))
}

async fn put(args: MetadataPutArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let request = PutMetadataRequest {
        custom_metadata: if args.custom_metadata.is_empty() {
            None
        } else {
            Some(labels(&args.custom_metadata)?)
        },
        path: args.path,
        max_versions: args.max_versions.map(i64::from),
        cas_required: args.cas_required,
        delete_version_after: args.delete_version_after.map(DurationValue::Text),
    };
    let session = Session::connect(global).await?;
    let path = request.path.as_str();
    session
        .client()
        .put_secret_metadata(&request)
        .await
        .map_err(session.fail(Operation::PutSecret { path }))?;
    Ok(Output::ok(render_done("metadata put", path, global.format)))
}

async fn delete(args: MetadataDeleteArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    if !args.yes {
        let question = format!(
            "Delete secret `{}`: every version and its metadata, for good?",
            args.path
        );
        confirm_at_terminal(&question)?;
    }
    let session = Session::connect(global).await?;
    let path = args.path.as_str();
    session
        .client()
        .delete_secret_metadata(path)
        .await
        .map_err(session.fail(Operation::ChangeVersions { path }))?;
    Ok(Output::ok(render_done(
        "metadata delete",
        path,
        global.format,
    )))
}

/// `--custom-metadata key=value` options as a map; a key given twice is an error.
pub fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>, InputError> {
    let mut map = BTreeMap::new();
    for (index, pair) in pairs.iter().enumerate() {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(InputError::MissingEquals(pair.clone()));
        };
        if key.is_empty() {
            return Err(InputError::EmptyKey(index + 1));
        }
        if map.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(InputError::DuplicateKey(key.to_owned()));
        }
    }
    Ok(map)
}

/// `OK`, or `{action, path}` for scripts.
pub fn render_done(action: &str, path: &str, format: Format) -> String {
    #[derive(Serialize)]
    struct Done<'a> {
        action: &'a str,
        path: &'a str,
    }
    structured(&Done { action, path }, format).unwrap_or_else(|| "OK\n".to_owned())
}

/// Keeps only `version`'s entry (0: all of them).
pub fn only_version(
    mut metadata: MetadataResponse,
    path: &str,
    version: u64,
) -> Result<MetadataResponse, PilotError> {
    if version == 0 {
        return Ok(metadata);
    }
    match metadata.versions.remove(&version) {
        Some(entry) => {
            metadata.versions = [(version, entry)].into();
            Ok(metadata)
        }
        None => Err(PilotError::Refused(format!(
            "Version {version} of {path} not found"
        ))),
    }
}

/// The metadata as a summary and a table of versions, or the API's shape for scripts.
pub fn render(metadata: &MetadataResponse, format: Format) -> String {
    if let Some(text) = structured(metadata, format) {
        return text;
    }
    let m = &metadata.metadata;
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("Metadata:\n");
    for (label, value) in [
        ("Current version", m.current_version.to_string()),
        ("Oldest version", m.oldest_version.to_string()),
        ("Created", time(m.created_time)),
        ("Updated", time(m.updated_time)),
        ("Max versions", m.max_versions.to_string()),
        ("CAS required", m.cas_required.to_string()),
        ("Delete after", m.delete_version_after.clone()),
        ("Created by", or_dash(&m.created_by)),
    ] {
        out.push_str(&format!("  {label:<15}  {value}\n"));
    }
    if !m.custom_metadata.is_empty() {
        out.push_str("\nCustom metadata:\n");
        for (key, value) in &m.custom_metadata {
            out.push_str(&format!("  {key}: {value}\n"));
        }
    }
    out.push_str("\nVersions:\n");
    let mut rows = vec![[
        "VERSION".to_owned(),
        "CREATED".to_owned(),
        "DELETED".to_owned(),
        "EXPIRES".to_owned(),
        "CREATED BY".to_owned(),
    ]];
    rows.extend(metadata.versions.values().map(|v| {
        // A readable version's deadline (fixed when it was written); a deleted or expired
        // one shows when under DELETED.
        let expires = v.deletion_time.filter(|_| v.deleted_time.is_none());
        [
            v.version.to_string(),
            time(v.created_time),
            v.deleted_time.map(time).unwrap_or_else(|| "-".to_owned()),
            expires.map(time).unwrap_or_else(|| "-".to_owned()),
            or_dash(&v.created_by),
        ]
    }));
    out.push_str(&table(&rows));
    out
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use nexus_api::model::{SecretMetadata, VersionMetadata};
    use time::OffsetDateTime;

    use super::*;

    const WRITER: &str = "spiffe://example.org/spike/pilot/role/superuser";

    fn sample() -> MetadataResponse {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::hours(1);
        let t2 = t0 + time::Duration::hours(2);
        let entry = |version, deleted, deletion| VersionMetadata {
            version,
            created_time: t0,
            deleted_time: deleted,
            deletion_time: deletion,
            created_by: WRITER.into(),
        };
        MetadataResponse {
            versions: [
                (1, entry(1, Some(t1), Some(t1))),
                (2, entry(2, None, Some(t2))),
            ]
            .into(),
            metadata: SecretMetadata {
                current_version: 2,
                oldest_version: 1,
                created_time: t0,
                updated_time: t1,
                max_versions: 10,
                created_by: WRITER.into(),
                custom_metadata: [("owner".to_owned(), "team-a".to_owned())].into(),
                cas_required: true,
                delete_version_after: "1h".into(),
            },
        }
    }

    #[test]
    fn human_table() {
        let text = render(&sample(), Format::Human);
        let want = "\
Metadata:
  Current version  2
  Oldest version   1
  Created          1970-01-01T00:00:00Z
  Updated          1970-01-01T01:00:00Z
  Max versions     10
  CAS required     true
  Delete after     1h
  Created by       spiffe://example.org/spike/pilot/role/superuser

Custom metadata:
  owner: team-a

Versions:
  VERSION  CREATED               DELETED               EXPIRES               CREATED BY
  1        1970-01-01T00:00:00Z  1970-01-01T01:00:00Z  -                     spiffe://example.org/spike/pilot/role/superuser
  2        1970-01-01T00:00:00Z  -                     1970-01-01T02:00:00Z  spiffe://example.org/spike/pilot/role/superuser
";
        assert_eq!(text, want);
    }

    #[test]
    fn json_and_yaml_are_the_api_shape() {
        for format in [Format::Json, Format::Yaml] {
            let text = render(&sample(), format);
            let value: serde_json::Value = match format {
                Format::Json => serde_json::from_str(&text).ok(),
                _ => serde_norway::from_str(&text).ok(),
            }
            .unwrap_or_default();
            assert_eq!(value["metadata"]["currentVersion"], 2, "{text}");
            assert_eq!(value["metadata"]["maxVersions"], 10, "{text}");
            assert_eq!(value["metadata"]["casRequired"], true, "{text}");
            assert_eq!(value["metadata"]["deleteVersionAfter"], "1h", "{text}");
            assert_eq!(
                value["metadata"]["customMetadata"]["owner"], "team-a",
                "{text}"
            );
            assert_eq!(value["versions"]["1"]["createdBy"], WRITER, "{text}");
            assert_eq!(
                value["versions"]["1"]["deletedTime"], "1970-01-01T01:00:00Z",
                "{text}"
            );
            assert!(value["versions"]["2"]["deletedTime"].is_null(), "{text}");
        }
    }

    #[test]
    fn labels_parse() {
        let pairs = ["owner=team-a".to_owned(), "tier=".to_owned()];
        let map = labels(&pairs).expect("labels");
        assert_eq!(map["owner"], "team-a");
        assert_eq!(map["tier"], "");
        assert!(matches!(
            labels(&["x".to_owned()]),
            Err(InputError::MissingEquals(_))
        ));
        assert!(matches!(
            labels(&["a=1".to_owned(), "a=2".to_owned()]),
            Err(InputError::DuplicateKey(k)) if k == "a"
        ));
        assert_eq!(render_done("metadata put", "db", Format::Human), "OK\n");
    }

    #[test]
    fn one_version() {
        let one = only_version(sample(), "db", 2).ok();
        assert_eq!(
            one.map(|m| m.versions.keys().copied().collect::<Vec<_>>()),
            Some(vec![2])
        );
        let all = only_version(sample(), "db", 0).ok();
        assert_eq!(all.map(|m| m.versions.len()), Some(2));
        let missing = only_version(sample(), "db", 9).err().map(|e| e.to_string());
        assert_eq!(missing.as_deref(), Some("Version 9 of db not found"));
    }
}
