//! `spire-server bundle show|set|list|delete`: this trust domain's bundle, and the bundles of
//! the trust domains it federates with. `-output json` prints SPIRE's shapes: a bundle, `{"bundles":
//! [...]}`, or per-bundle `results` with a status (`-format` is for pretty output only, as in
//! SPIRE).

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use spiffe::TrustDomain;
use spire_proto::bundle_format;
use spire_proto::server as pb;

use super::output::{bundle_json, print_json, status_json};
use super::{Admin, Output, status_error};

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
            match admin.output {
                Output::Json => print_json(&bundle_json(&bundle)),
                Output::Pretty => print_bundle(&bundle, format)?,
            }
            Ok(())
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
            let set = admin.client().await?.set_federated_bundle(bundle).await;
            if admin.output == Output::Json {
                let status = set.as_ref().map(|_| ()).map_err(Clone::clone);
                let stored = set.as_ref().ok().map(|b| bundle_json(b.get_ref()));
                print_json(&serde_json::json!({
                    "results": [{ "status": status_json(&status), "bundle": stored }]
                }));
            }
            set.map_err(status_error)?;
            if admin.output == Output::Pretty {
                println!("bundle set for {}", td.id_string());
            }
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
            if admin.output == Output::Json {
                match (&wanted, bundles.first()) {
                    (Some(_), Some(bundle)) => print_json(&bundle_json(bundle)),
                    _ => print_json(&serde_json::json!({
                        "bundles": bundles.iter().map(bundle_json).collect::<Vec<_>>(),
                        "next_page_token": "",
                    })),
                }
                return Ok(());
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
            let deleted = admin
                .client()
                .await?
                .delete_federated_bundle(pb::TrustDomainRequest {
                    trust_domain: td.to_string(),
                })
                .await
                .map(|_| ());
            match admin.output {
                Output::Json => print_json(&serde_json::json!({
                    "results": [{ "status": status_json(&deleted), "trust_domain": td.as_str() }]
                })),
                Output::Pretty if deleted.is_ok() => {
                    println!("bundle deleted for {}", td.id_string());
                }
                Output::Pretty => {}
            }
            deleted.map_err(status_error)
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
