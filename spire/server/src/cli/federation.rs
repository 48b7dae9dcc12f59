//! `spire-server federation create|update|delete|list|show|refresh`, with SPIRE's flags:
//! relationships with other trust domains, stored by the server and followed at once.

use std::path::PathBuf;

use clap::Subcommand;
use spire_proto::bundle_format;
use spire_proto::server as pb;

use super::bundle::Format;
use super::output::print_json;
use super::{Admin, Output, status_error};

/// Flags describing a relationship, shared by create and update.
#[derive(Debug, clap::Args)]
pub struct RelationshipFlags {
    /// The trust domain to federate with, e.g. `other.org` or `spiffe://other.org`.
    #[arg(long = "trustDomain")]
    trust_domain: String,
    /// The URL of its bundle endpoint, `https://...`.
    #[arg(long = "bundleEndpointURL")]
    url: String,
    /// `https_spiffe` or `https_web`.
    #[arg(long = "bundleEndpointProfile", default_value = "https_spiffe")]
    profile: String,
    /// https_spiffe: the SPIFFE ID the endpoint presents.
    #[arg(long = "endpointSpiffeID", default_value = "")]
    endpoint_spiffe_id: String,
    /// https_spiffe: a bundle of that trust domain to verify the endpoint with at first.
    #[arg(long = "trustDomainBundlePath")]
    bundle_path: Option<PathBuf>,
    /// Format of that bundle: pem or spiffe.
    #[arg(long = "trustDomainBundleFormat", default_value = "pem")]
    bundle_format: Format,
}

impl RelationshipFlags {
    fn to_proto(&self) -> anyhow::Result<pb::FederationRelationship> {
        let bundle = match &self.bundle_path {
            Some(path) => {
                let data = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                let td = self.trust_domain.trim_start_matches("spiffe://");
                if matches!(self.bundle_format, Format::Spiffe)
                    != data.trim_ascii_start().starts_with(b"{")
                {
                    anyhow::bail!(
                        "{} is not in the -trustDomainBundleFormat given",
                        path.display()
                    );
                }
                Some(
                    bundle_format::parse_bundle(td, &data)
                        .map_err(|e| anyhow::anyhow!("invalid bundle {}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(pb::FederationRelationship {
            trust_domain: self.trust_domain.clone(),
            bundle_endpoint_url: self.url.clone(),
            bundle_endpoint_profile: self.profile.clone(),
            endpoint_spiffe_id: self.endpoint_spiffe_id.clone(),
            trust_domain_bundle: bundle,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Creates a relationship with another trust domain.
    Create {
        #[command(flatten)]
        rel: RelationshipFlags,
        #[command(flatten)]
        admin: Admin,
    },
    /// Replaces a relationship.
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

pub async fn execute(command: FederationCommand) -> anyhow::Result<()> {
    match command {
        FederationCommand::Create { rel, admin } => {
            let created = admin
                .client()
                .await?
                .create_federation_relationship(rel.to_proto()?)
                .await
                .map_err(status_error)?
                .into_inner();
            print_relationships(&[created], admin.output, false);
        }
        FederationCommand::Update { rel, admin } => {
            let updated = admin
                .client()
                .await?
                .update_federation_relationship(rel.to_proto()?)
                .await
                .map_err(status_error)?
                .into_inner();
            print_relationships(&[updated], admin.output, false);
        }
        FederationCommand::Delete { id, admin } => {
            admin
                .client()
                .await?
                .delete_federation_relationship(pb::TrustDomainRequest {
                    trust_domain: id.clone(),
                })
                .await
                .map_err(status_error)?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({ "deleted": id })),
                Output::Pretty => println!("Federation relationship deleted."),
            }
        }
        FederationCommand::List { admin } => {
            let all = list(&admin).await?;
            print_relationships(&all, admin.output, true);
        }
        FederationCommand::Show {
            trust_domain,
            admin,
        } => {
            let td = spiffe::TrustDomain::new(&trust_domain)
                .map_err(|e| anyhow::anyhow!("invalid -trustDomain {trust_domain:?}: {e}"))?;
            let found: Vec<_> = list(&admin)
                .await?
                .into_iter()
                .filter(|r| r.trust_domain == td.as_str())
                .collect();
            if found.is_empty() {
                anyhow::bail!("no federation relationship with {td}");
            }
            print_relationships(&found, admin.output, false);
        }
        FederationCommand::Refresh { id, admin } => {
            let bundle = admin
                .client()
                .await?
                .refresh_bundle(pb::TrustDomainRequest { trust_domain: id })
                .await
                .map_err(status_error)?
                .into_inner();
            match admin.output {
                Output::Json => print_json(&serde_json::json!({
                    "trust_domain": bundle.trust_domain,
                    "sequence_number": bundle.sequence_number,
                })),
                Output::Pretty => println!("Bundle refreshed"),
            }
        }
    }
    Ok(())
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

fn relationship_json(r: &pb::FederationRelationship) -> serde_json::Value {
    serde_json::json!({
        "trust_domain": r.trust_domain,
        "bundle_endpoint_url": r.bundle_endpoint_url,
        "bundle_endpoint_profile": r.bundle_endpoint_profile,
        "endpoint_spiffe_id": r.endpoint_spiffe_id,
    })
}

fn print_relationships(all: &[pb::FederationRelationship], output: Output, count: bool) {
    match output {
        Output::Json if count => print_json(&serde_json::json!({
            "federation_relationships": all.iter().map(relationship_json).collect::<Vec<_>>()
        })),
        Output::Json => {
            for r in all {
                print_json(&relationship_json(r));
            }
        }
        Output::Pretty => {
            if count {
                let noun = if all.len() == 1 {
                    "relationship"
                } else {
                    "relationships"
                };
                println!("Found {} federation {noun}\n", all.len());
            }
            for r in all {
                println!("Trust domain              : {}", r.trust_domain);
                println!("Bundle endpoint URL       : {}", r.bundle_endpoint_url);
                println!("Bundle endpoint profile   : {}", r.bundle_endpoint_profile);
                if !r.endpoint_spiffe_id.is_empty() {
                    println!("Endpoint SPIFFE ID        : {}", r.endpoint_spiffe_id);
                }
                println!();
            }
        }
    }
}
