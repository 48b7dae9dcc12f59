//! `spire-server entry create|update|show|count|delete`.

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use super::output::{entry_json, entry_pretty, print_count, print_json};
use super::{Admin, Output, status_error};

/// Flags describing an entry, shared by create and update.
#[derive(Debug, clap::Args)]
pub struct EntryFlags {
    /// The SPIFFE ID of the identity this entry grants.
    #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
    spiffe_id: Option<SpiffeId>,
    /// The SPIFFE ID of the agent (or node alias) that may issue it.
    #[arg(long = "parentID", value_parser = spire_proto::flags::canonical_spiffe_id)]
    parent_id: Option<SpiffeId>,
    /// A selector `type:value` the workload must have, e.g. `unix:uid:1000`; repeatable.
    #[arg(long = "selector")]
    selectors: Vec<String>,
    /// X509-SVID lifetime in seconds (0 = server default).
    #[arg(long = "x509SVIDTTL", default_value_t = 0)]
    x509_svid_ttl: i32,
    /// JWT-SVID lifetime in seconds (0 = server default).
    #[arg(long = "jwtSVIDTTL", default_value_t = 0)]
    jwt_svid_ttl: i32,
    /// A DNS name to add to the SVID; repeatable. The first becomes the subject's CN.
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    /// A trust domain whose bundle workloads with this entry receive; repeatable.
    #[arg(long = "federatesWith")]
    federates_with: Vec<String>,
    /// A hint that helps a workload pick between several identities.
    #[arg(long = "hint", default_value = "")]
    hint: String,
    /// Marks the entry as an admin identity.
    #[arg(long = "admin")]
    admin: bool,
    /// Unix time after which the entry is no longer served (0 = never).
    #[arg(long = "entryExpiry", default_value_t = 0)]
    entry_expiry: i64,
}

impl EntryFlags {
    fn to_proto(&self, id: String) -> anyhow::Result<pb::Entry> {
        let (Some(spiffe_id), Some(parent_id)) = (&self.spiffe_id, &self.parent_id) else {
            anyhow::bail!("-spiffeID and -parentID are required (or -data with a file of entries)");
        };
        if self.selectors.is_empty() {
            anyhow::bail!("at least one -selector is required");
        }
        let mut selectors = Vec::with_capacity(self.selectors.len());
        for raw in &self.selectors {
            selectors.push(
                raw.parse::<pb::Selector>()
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        Ok(pb::Entry {
            id,
            spiffe_id: spiffe_id.to_string(),
            parent_id: parent_id.to_string(),
            selectors,
            x509_svid_ttl: self.x509_svid_ttl,
            jwt_svid_ttl: self.jwt_svid_ttl,
            dns_names: self.dns_names.clone(),
            hint: self.hint.clone(),
            admin: self.admin,
            federates_with: self.federates_with.clone(),
            expires_at: self.entry_expiry,
            ..Default::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Creates a registration entry, or each entry of a `-data` file.
    Create {
        #[command(flatten)]
        entry: EntryFlags,
        /// Use this entry ID instead of a generated one.
        #[arg(long = "entryID", default_value = "")]
        entry_id: String,
        /// A JSON file of entries as SPIRE's (`{"entries": [...]}`; `-` for standard input),
        /// instead of the flags.
        #[arg(long = "data", conflicts_with_all = ["spiffe_id", "parent_id", "selectors"])]
        data: Option<std::path::PathBuf>,
        #[command(flatten)]
        admin: Admin,
    },
    /// Replaces an existing entry's fields.
    Update {
        /// The entry to update.
        #[arg(long = "entryID")]
        entry_id: String,
        #[command(flatten)]
        entry: EntryFlags,
        #[command(flatten)]
        admin: Admin,
    },
    /// Shows entries, optionally filtered.
    Show {
        /// Show only this entry.
        #[arg(long = "entryID")]
        entry_id: Option<String>,
        /// Only entries with this SPIFFE ID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: Option<SpiffeId>,
        /// Only entries with this parent.
        #[arg(long = "parentID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        parent_id: Option<SpiffeId>,
        /// Only entries having this selector; repeatable.
        #[arg(long = "selector")]
        selectors: Vec<String>,
        /// Only entries federating with this trust domain (`spiffe://other.org`); repeatable.
        #[arg(long = "federatesWith")]
        federates_with: Vec<String>,
        #[command(flatten)]
        admin: Admin,
    },
    /// Counts registration entries.
    Count {
        #[command(flatten)]
        admin: Admin,
    },
    /// Deletes an entry, or each entry of a `-file`.
    Delete {
        /// The entry to delete.
        #[arg(long = "entryID", required_unless_present = "file")]
        entry_id: Option<String>,
        /// A JSON file of entry IDs as SPIRE's (`{"ids": [...]}`; `-` for standard input).
        #[arg(long = "file", conflicts_with = "entry_id")]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn execute(command: EntryCommand) -> anyhow::Result<()> {
    match command {
        EntryCommand::Create {
            data: Some(data),
            admin,
            ..
        } => {
            let entries = super::entry_batch::parse_entries(&data)?;
            super::entry_batch::create(&admin, entries).await?;
        }
        EntryCommand::Count { admin } => {
            let count = admin
                .client()
                .await?
                .count_entries(pb::Empty {})
                .await
                .map_err(status_error)?
                .into_inner()
                .count;
            print_count(admin.output, count, "registration", "entry", "entries");
        }
        EntryCommand::Delete {
            file: Some(file),
            admin,
            ..
        } => {
            let ids = super::entry_batch::parse_ids(&file)?;
            super::entry_batch::delete(&admin, ids).await?;
        }
        EntryCommand::Create {
            entry,
            entry_id,
            admin,
            data: None,
        } => {
            let request = entry.to_proto(entry_id)?;
            let created = admin
                .client()
                .await?
                .create_entry(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_entry(&admin, &created);
        }
        EntryCommand::Update {
            entry_id,
            entry,
            admin,
        } => {
            let request = entry.to_proto(entry_id)?;
            let updated = admin
                .client()
                .await?
                .update_entry(request)
                .await
                .map_err(status_error)?
                .into_inner();
            print_entry(&admin, &updated);
        }
        EntryCommand::Show {
            entry_id,
            spiffe_id,
            parent_id,
            selectors,
            federates_with,
            admin,
        } => {
            let wanted = federates_with
                .iter()
                .map(|td| {
                    spiffe::TrustDomain::new(td)
                        .map_err(|e| anyhow::anyhow!("invalid -federatesWith {td:?}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut client = admin.client().await?;
            let entries = if let Some(id) = entry_id {
                vec![
                    client
                        .get_entry(pb::EntryIdRequest { id })
                        .await
                        .map_err(status_error)?
                        .into_inner(),
                ]
            } else {
                let mut parsed = Vec::new();
                for raw in &selectors {
                    parsed.push(
                        raw.parse::<pb::Selector>()
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    );
                }
                let request = pb::ListEntriesRequest {
                    spiffe_id: spiffe_id.map(|id| id.to_string()).unwrap_or_default(),
                    parent_id: parent_id.map(|id| id.to_string()).unwrap_or_default(),
                    selectors: parsed,
                };
                client
                    .list_entries(request)
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .entries
            };
            // Entries federating with every trust domain asked for, as SPIRE's filter.
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|e| {
                    wanted.iter().all(|td| {
                        e.federates_with
                            .iter()
                            .any(|f| spiffe::TrustDomain::new(f).is_ok_and(|f| &f == td))
                    })
                })
                .collect();
            match admin.output {
                Output::Json => print_json(&serde_json::json!({
                    "entries": entries.iter().map(entry_json).collect::<Vec<_>>()
                })),
                Output::Pretty => {
                    let noun = if entries.len() == 1 {
                        "entry"
                    } else {
                        "entries"
                    };
                    println!("Found {} {noun}", entries.len());
                    for e in &entries {
                        println!("{}", entry_pretty(e));
                    }
                }
            }
        }
        EntryCommand::Delete {
            entry_id: Some(entry_id),
            admin,
            file: None,
        } => {
            admin
                .client()
                .await?
                .delete_entry(pb::EntryIdRequest {
                    id: entry_id.clone(),
                })
                .await
                .map_err(status_error)?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({ "deleted": entry_id })),
                Output::Pretty => println!("Deleted entry with ID: {entry_id}"),
            }
        }
        EntryCommand::Delete { .. } => anyhow::bail!("-entryID or -file is required"),
    }
    Ok(())
}

fn print_entry(admin: &Admin, entry: &pb::Entry) {
    match admin.output {
        Output::Json => print_json(&entry_json(entry)),
        Output::Pretty => print!("{}", entry_pretty(entry)),
    }
}
