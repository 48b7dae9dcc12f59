//! `entry create -data FILE` and `entry delete -file FILE`: batches in SPIRE's JSON, each entry
//! created or deleted on its own (one transaction each, so a failure leaves nothing half
//! written) and reported on its own, as SPIRE's batch calls report per-entry statuses.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use spire_proto::server as pb;

use super::output::{entry_json, entry_pretty, print_json, status_json};
use super::{Admin, Output};

/// Most entries one file may hold.
pub const MAX_BATCH: usize = 1000;

/// An entry as SPIRE's `-data` files write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataEntry {
    #[serde(default, alias = "id")]
    entry_id: String,
    spiffe_id: String,
    parent_id: String,
    #[serde(default)]
    selectors: Vec<DataSelector>,
    #[serde(default, alias = "ttl")]
    x509_svid_ttl: i32,
    #[serde(default)]
    jwt_svid_ttl: i32,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    federates_with: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    downstream: bool,
    #[serde(default)]
    hint: String,
    #[serde(default, alias = "entryExpiry", alias = "expires_at")]
    entry_expiry: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSelector {
    r#type: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    entries: Vec<DataEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsFile {
    ids: Vec<String>,
}

/// Reads `path` (`-` is standard input), bounded.
pub(super) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    const MAX_BYTES: u64 = 16 << 20;
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_BYTES + 1)
            .read_to_end(&mut data)?;
    } else {
        std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
            .take(MAX_BYTES + 1)
            .read_to_end(&mut data)?;
    }
    if data.len() as u64 > MAX_BYTES {
        anyhow::bail!("{} is larger than {MAX_BYTES} bytes", path.display());
    }
    Ok(data)
}

/// The entries of a `-data` file, all parsed before any is sent.
pub fn parse_entries(path: &Path) -> anyhow::Result<Vec<pb::Entry>> {
    let file: DataFile = serde_json::from_slice(&read(path)?)
        .map_err(|e| anyhow::anyhow!("{}: not SPIRE's entries JSON: {e}", path.display()))?;
    if file.entries.len() > MAX_BATCH {
        anyhow::bail!("{}: at most {MAX_BATCH} entries per file", path.display());
    }
    Ok(file
        .entries
        .into_iter()
        .map(|e| pb::Entry {
            id: e.entry_id,
            spiffe_id: e.spiffe_id,
            parent_id: e.parent_id,
            selectors: e
                .selectors
                .into_iter()
                .map(|s| pb::Selector {
                    r#type: s.r#type,
                    value: s.value,
                })
                .collect(),
            x509_svid_ttl: e.x509_svid_ttl,
            jwt_svid_ttl: e.jwt_svid_ttl,
            dns_names: e.dns_names,
            federates_with: e.federates_with,
            admin: e.admin,
            downstream: e.downstream,
            hint: e.hint,
            expires_at: e.entry_expiry,
            ..Default::default()
        })
        .collect())
}

/// The IDs of an `-file` for `entry delete`.
pub fn parse_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let file: IdsFile = serde_json::from_slice(&read(path)?)
        .map_err(|e| anyhow::anyhow!("{}: expected {{\"ids\": [...]}}: {e}", path.display()))?;
    if file.ids.len() > MAX_BATCH {
        anyhow::bail!("{}: at most {MAX_BATCH} IDs per file", path.display());
    }
    Ok(file.ids)
}

/// Creates each entry and reports each; fails if any failed.
pub async fn create(admin: &Admin, entries: Vec<pb::Entry>) -> anyhow::Result<()> {
    let mut client = admin.client().await?;
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries {
        let result = client.create_entry(entry.clone()).await;
        results.push(match result {
            Ok(created) => (Ok(()), created.into_inner()),
            Err(status) => (Err(status), entry),
        });
    }
    let failed = results.iter().filter(|(r, _)| r.is_err()).count();
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "results": results.iter().map(|(status, entry)| serde_json::json!({
                "status": status_json(status),
                "entry": entry_json(entry),
            })).collect::<Vec<_>>()
        })),
        Output::Pretty => {
            for (status, entry) in &results {
                if let Err(s) = status {
                    println!(
                        "Failed to create the following entry (code: {:?}, msg: {:?}):",
                        s.code(),
                        s.message()
                    );
                }
                println!("{}", entry_pretty(entry));
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} entries could not be created", results.len());
    }
    Ok(())
}

/// Deletes each entry and reports each; fails if any failed.
pub async fn delete(admin: &Admin, ids: Vec<String>) -> anyhow::Result<()> {
    let mut client = admin.client().await?;
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let status = client
            .delete_entry(pb::EntryIdRequest { id: id.clone() })
            .await
            .map(|_| ());
        results.push((status, id));
    }
    let failed = results.iter().filter(|(r, _)| r.is_err()).count();
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "results": results.iter().map(|(status, id)| serde_json::json!({
                "status": status_json(status),
                "id": id,
            })).collect::<Vec<_>>()
        })),
        Output::Pretty => {
            for (status, id) in &results {
                match status {
                    Ok(()) => println!("Deleted entry with ID: {id}"),
                    Err(s) => println!(
                        "Failed to delete entry with ID {id} (code: {:?}, msg: {:?})",
                        s.code(),
                        s.message()
                    ),
                }
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} entries could not be deleted", results.len());
    }
    Ok(())
}
