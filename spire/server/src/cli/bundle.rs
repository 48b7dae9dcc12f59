//! `spire-server bundle show`.

use clap::Subcommand;
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
}

pub async fn execute(command: BundleCommand) -> anyhow::Result<()> {
    let BundleCommand::Show { format, admin } = command;
    let bundle = admin
        .client()
        .await?
        .get_bundle(pb::Empty {})
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Pem => print!("{}", bundle_format::to_pem(&bundle)),
        Format::Spiffe => println!("{}", bundle_format::to_spiffe_json(&bundle)?),
    }
    Ok(())
}
