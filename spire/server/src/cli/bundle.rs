//! `spire-server bundle show|set|list|delete`: this trust domain's bundle, and the bundles of
//! the trust domains it federates with.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use spiffe::TrustDomain;
use spire_proto::bundle_format;
use spire_proto::server as pb;

use super::{Admin, status_error};

/// Bundle formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Pem,
    Spiffe,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Prints the trust domain's bundle.
    Show {
        /// pem (CA certificates) or spiffe (JWK Set with sequence and refresh hint).
        #[arg(long = "format", default_value = "pem")]
        format: Format,
        #[command(flatten)]
        admin: Admin,
    },
    /// Sets (creates or replaces) the bundle of another trust domain.
    Set {
        /// The trust domain's SPIFFE ID, e.g. spiffe://other.org.
        #[arg(long = "id")]
        id: String,
        /// File holding the bundle; standard input when omitted.
        #[arg(long = "path")]
        path: Option<std::path::PathBuf>,
        /// spiffe (JWK Set, as `bundle show -format spiffe` prints it) or pem (CAs only).
        #[arg(long = "format", default_value = "pem")]
        format: Format,
        #[command(flatten)]
        admin: Admin,
    },
    /// Lists the bundles of other trust domains.
    List {
        /// Only this trust domain's bundle.
        #[arg(long = "id")]
        id: Option<String>,
        #[arg(long = "format", default_value = "pem")]
        format: Format,
        #[command(flatten)]
        admin: Admin,
    },
    /// Deletes the bundle of another trust domain.
    Delete {
        /// The trust domain's SPIFFE ID, e.g. spiffe://other.org.
        #[arg(long = "id")]
        id: String,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn execute(command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Show { format, admin } => {
            let bundle = admin
                .client()
                .await?
                .get_bundle(pb::Empty {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_bundle(&bundle, format)
        }
        BundleCommand::Set {
            id,
            path,
            format,
            admin,
        } => {
            let td = trust_domain(&id)?;
            let data = match &path {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("reading the bundle {}", path.display()))?,
                None => {
                    let mut data = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut data)
                        .context("reading the bundle from standard input")?;
                    data
                }
            };
            let looks_json = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            match format {
                Format::Pem if looks_json => {
                    anyhow::bail!("the bundle is JSON; pass -format spiffe")
                }
                Format::Spiffe if !looks_json => {
                    anyhow::bail!("the bundle is not a SPIFFE bundle (JSON); pass -format pem")
                }
                _ => {}
            }
            let bundle = bundle_format::parse_bundle(td.as_str(), &data)
                .map_err(|e| anyhow::anyhow!("invalid bundle: {e}"))?;
            admin
                .client()
                .await?
                .set_federated_bundle(bundle)
                .await
                .map_err(status_error)?;
            println!("bundle set for {}", td.id_string());
            Ok(())
        }
        BundleCommand::List { id, format, admin } => {
            let wanted = id.as_deref().map(trust_domain).transpose()?;
            let bundles = admin
                .client()
                .await?
                .list_federated_bundles(pb::Empty {})
                .await
                .map_err(status_error)?
                .into_inner()
                .bundles;
            let bundles: Vec<_> = bundles
                .into_iter()
                .filter(|b| {
                    wanted
                        .as_ref()
                        .is_none_or(|td| td.as_str() == b.trust_domain)
                })
                .collect();
            if let (Some(td), true) = (&wanted, bundles.is_empty()) {
                anyhow::bail!("no bundle is stored for {td}");
            }
            for (i, bundle) in bundles.iter().enumerate() {
                if wanted.is_none() {
                    if i > 0 {
                        println!();
                    }
                    println!("****************************************");
                    println!("* spiffe://{}", bundle.trust_domain);
                    println!("****************************************");
                }
                print_bundle(bundle, format)?;
            }
            Ok(())
        }
        BundleCommand::Delete { id, admin } => {
            let td = trust_domain(&id)?;
            admin
                .client()
                .await?
                .delete_federated_bundle(pb::TrustDomainRequest {
                    trust_domain: td.to_string(),
                })
                .await
                .map_err(status_error)?;
            println!("bundle deleted for {}", td.id_string());
            Ok(())
        }
    }
}

fn print_bundle(bundle: &pb::Bundle, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Pem => print!("{}", bundle_format::to_pem(bundle)),
        Format::Spiffe => println!("{}", bundle_format::to_spiffe_json(bundle)?),
    }
    Ok(())
}

/// `spiffe://other.org` (SPIRE's `-id`) or `other.org`.
fn trust_domain(id: &str) -> anyhow::Result<TrustDomain> {
    TrustDomain::new(id).map_err(|e| anyhow::anyhow!("invalid -id {id:?}: {e}"))
}
