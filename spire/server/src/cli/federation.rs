//! `spire-server federation create|update|delete|list|show|refresh`, with SPIRE's flags and
//! output: relationships with other trust domains, stored by the server and followed at once.
//! `create` and `update` take one relationship from flags or several from `-data`, and report
//! each on its own.

use std::path::PathBuf;

use clap::Subcommand;
use spire_proto::server as pb;

use super::bundle::Format;
use super::output::{print_json, relationship_json, relationship_pretty, status_json};
use super::{Admin, Output, status_error};

/// A relationship from flags, or a `-data` file of them; shared by create and update.
#[derive(Debug, clap::Args)]
pub struct RelationshipFlags {
    /// A JSON file of relationships as SPIRE's (`{"federationRelationships": [...]}`; `-` for
    /// standard input), instead of the flags below.
    #[arg(long = "data")]
    data: Option<PathBuf>,
    /// The trust domain to federate with, e.g. `other.org` or `spiffe://other.org`.
    #[arg(long = "trustDomain")]
    trust_domain: Option<String>,
    /// The URL of its bundle endpoint, `https://...`.
    #[arg(long = "bundleEndpointURL")]
    url: Option<String>,
    /// `https_spiffe` (the default) or `https_web`.
    #[arg(long = "bundleEndpointProfile")]
    profile: Option<String>,
    /// https_spiffe: the SPIFFE ID the endpoint presents.
    #[arg(long = "endpointSpiffeID")]
    endpoint_spiffe_id: Option<String>,
    /// https_spiffe: a bundle of that trust domain to verify the endpoint with at first.
    #[arg(long = "trustDomainBundlePath")]
    bundle_path: Option<PathBuf>,
    /// Format of that bundle: pem (the default) or spiffe.
    #[arg(long = "trustDomainBundleFormat")]
    bundle_format: Option<Format>,
}

impl RelationshipFlags {
    /// The relationships to send, every one parsed before any is sent.
    fn relationships(&self) -> anyhow::Result<Vec<pb::FederationRelationship>> {
        if let Some(data) = &self.data {
            if self.trust_domain.is_some()
                || self.url.is_some()
                || self.profile.is_some()
                || self.endpoint_spiffe_id.is_some()
                || self.bundle_path.is_some()
                || self.bundle_format.is_some()
            {
                anyhow::bail!(
                    "cannot use other flags to specify relationship fields when 'data' flag is set"
                );
            }
            return super::federation_data::parse_file(data);
        }
        let (Some(trust_domain), Some(url)) = (&self.trust_domain, &self.url) else {
            anyhow::bail!("-trustDomain and -bundleEndpointURL are required (or -data FILE)");
        };
        let bundle = match &self.bundle_path {
            Some(path) => {
                let data = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                let format = self.bundle_format.unwrap_or(Format::Pem);
                Some(
                    super::federation_data::bootstrap_bundle(trust_domain, &data, format)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(vec![pb::FederationRelationship {
            trust_domain: trust_domain.clone(),
            bundle_endpoint_url: url.clone(),
            bundle_endpoint_profile: self
                .profile
                .clone()
                .unwrap_or_else(|| "https_spiffe".into()),
            endpoint_spiffe_id: self.endpoint_spiffe_id.clone().unwrap_or_default(),
            trust_domain_bundle: bundle,
        }])
    }
}

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Creates relationships with other trust domains.
    Create {
        #[command(flatten)]
        rel: RelationshipFlags,
        #[command(flatten)]
        admin: Admin,
    },
    /// Replaces relationships.
    Update {
        #[command(flatten)]
        rel: RelationshipFlags,
        #[command(flatten)]
        admin: Admin,
    },
    /// Deletes a relationship (the bundle fetched so far stays; `bundle delete` removes it).
    Delete {
        /// The trust domain.
        #[arg(long = "id")]
        id: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Lists the relationships (config file and runtime).
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// Shows one relationship.
    Show {
        /// The trust domain.
        #[arg(long = "trustDomain")]
        trust_domain: String,
        #[command(flatten)]
        admin: Admin,
    },
    /// Fetches a relationship's bundle from its endpoint now.
    Refresh {
        /// The trust domain.
        #[arg(long = "id")]
        id: String,
        #[command(flatten)]
        admin: Admin,
    },
}

/// Create or update.
#[derive(Debug, Clone, Copy)]
enum Change {
    Create,
    Update,
}

pub async fn execute(command: FederationCommand) -> anyhow::Result<()> {
    match command {
        FederationCommand::Create { rel, admin } => {
            apply(&admin, rel.relationships()?, Change::Create).await?
        }
        FederationCommand::Update { rel, admin } => {
            apply(&admin, rel.relationships()?, Change::Update).await?
        }
        FederationCommand::Delete { id, admin } => delete(&admin, id).await?,
        FederationCommand::List { admin } => {
            let all = list(&admin).await?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({
                    "federation_relationships": all.iter().map(relationship_json).collect::<Vec<_>>(),
                    "next_page_token": "",
                })),
                Output::Pretty => {
                    let noun = if all.len() == 1 {
                        "relationship"
                    } else {
                        "relationships"
                    };
                    println!("Found {} federation {noun}", all.len());
                    for r in &all {
                        print!("\n{}", relationship_pretty(r));
                    }
                }
            }
        }
        FederationCommand::Show {
            trust_domain,
            admin,
        } => {
            let td = spiffe::TrustDomain::new(&trust_domain)
                .map_err(|e| anyhow::anyhow!("invalid -trustDomain {trust_domain:?}: {e}"))?;
            let found = list(&admin)
                .await?
                .into_iter()
                .find(|r| r.trust_domain == td.as_str())
                .ok_or_else(|| anyhow::anyhow!("no federation relationship with {td}"))?;
            match admin.output {
                Output::Json => print_json(&relationship_json(&found)),
                Output::Pretty => print!(
                    "Found a federation relationship with trust domain {td}:\n\n{}",
                    relationship_pretty(&found)
                ),
            }
        }
        FederationCommand::Refresh { id, admin } => {
            admin
                .client()
                .await?
                .refresh_bundle(pb::TrustDomainRequest { trust_domain: id })
                .await
                .map_err(status_error)?;
            match admin.output {
                Output::Json => print_json(&status_json(&Ok(()))),
                Output::Pretty => println!("Bundle refreshed"),
            }
        }
    }
    Ok(())
}

/// Creates or updates each relationship and reports each as SPIRE does (failures on
/// standard error); fails if any failed.
async fn apply(
    admin: &Admin,
    relationships: Vec<pb::FederationRelationship>,
    change: Change,
) -> anyhow::Result<()> {
    let mut client = admin.client().await?;
    let mut results = Vec::with_capacity(relationships.len());
    for rel in relationships {
        let answer = match change {
            Change::Create => client.create_federation_relationship(rel.clone()).await,
            Change::Update => client.update_federation_relationship(rel.clone()).await,
        };
        results.push(match answer {
            Ok(stored) => (Ok(()), stored.into_inner()),
            Err(status) => (Err(status), rel),
        });
    }
    let verb = match change {
        Change::Create => "create",
        Change::Update => "update",
    };
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "results": results.iter().map(|(status, rel)| serde_json::json!({
                "status": status_json(status),
                "federation_relationship": relationship_json(rel),
            })).collect::<Vec<_>>()
        })),
        Output::Pretty => {
            for (status, rel) in &results {
                match status {
                    Ok(()) => print!("\n{}", relationship_pretty(rel)),
                    Err(s) => eprint!(
                        "\nFailed to {verb} the following federation relationship (code: {:?}, \
                         msg: {:?}):\n{}",
                        s.code(),
                        s.message(),
                        relationship_pretty(rel)
                    ),
                }
            }
        }
    }
    if results.iter().any(|(status, _)| status.is_err()) {
        anyhow::bail!("failed to {verb} one or more federation relationships");
    }
    Ok(())
}

async fn delete(admin: &Admin, id: String) -> anyhow::Result<()> {
    let deleted = admin
        .client()
        .await?
        .delete_federation_relationship(pb::TrustDomainRequest {
            trust_domain: id.clone(),
        })
        .await
        .map(|_| ());
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "results": [{ "status": status_json(&deleted), "trust_domain": id }]
        })),
        Output::Pretty if deleted.is_ok() => println!("federation relationship deleted."),
        Output::Pretty => {}
    }
    deleted.map_err(status_error)
}

async fn list(admin: &Admin) -> anyhow::Result<Vec<pb::FederationRelationship>> {
    Ok(admin
        .client()
        .await?
        .list_federation_relationships(pb::Empty {})
        .await
        .map_err(status_error)?
        .into_inner()
        .relationships)
}
