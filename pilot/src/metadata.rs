//! `spike secret metadata get`: a secret's versions, when they were written and deleted, and
//! by whom.

use nexus_api::model::MetadataResponse;

use crate::cli::{GlobalArgs, MetadataCommand};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::output::{Format, Output, structured, time};

/// Runs a `spike secret metadata` command.
pub async fn run(command: MetadataCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    let MetadataCommand::Get(args) = command;
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
        ("Created by", or_dash(&m.created_by)),
    ] {
        out.push_str(&format!("  {label:<15}  {value}\n"));
    }
    out.push_str("\nVersions:\n");
    let mut rows = vec![[
        "VERSION".to_owned(),
        "CREATED".to_owned(),
        "DELETED".to_owned(),
        "CREATED BY".to_owned(),
    ]];
    rows.extend(metadata.versions.values().map(|v| {
        [
            v.version.to_string(),
            time(v.created_time),
            v.deleted_time.map(time).unwrap_or_else(|| "-".to_owned()),
            or_dash(&v.created_by),
        ]
    }));
    out.push_str(&table(&rows));
    out
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table(rows: &[[String; 4]]) -> String {
    let mut widths = [0; 4];
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
        let entry = |version, deleted| VersionMetadata {
            version,
            created_time: t0,
            deleted_time: deleted,
            created_by: WRITER.into(),
        };
        MetadataResponse {
            versions: [(1, entry(1, Some(t1))), (2, entry(2, None))].into(),
            metadata: SecretMetadata {
                current_version: 2,
                oldest_version: 1,
                created_time: t0,
                updated_time: t1,
                max_versions: 10,
                created_by: WRITER.into(),
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
  Created by       spiffe://example.org/spike/pilot/role/superuser

Versions:
  VERSION  CREATED               DELETED               CREATED BY
  1        1970-01-01T00:00:00Z  1970-01-01T01:00:00Z  spiffe://example.org/spike/pilot/role/superuser
  2        1970-01-01T00:00:00Z  -                     spiffe://example.org/spike/pilot/role/superuser
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
            assert_eq!(value["versions"]["1"]["createdBy"], WRITER, "{text}");
            assert_eq!(
                value["versions"]["1"]["deletedTime"], "1970-01-01T01:00:00Z",
                "{text}"
            );
            assert!(value["versions"]["2"]["deletedTime"].is_null(), "{text}");
        }
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
