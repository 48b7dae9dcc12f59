//! `spire-server x509 mint`: an X509-SVID straight from the CA, for bootstrapping or testing.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::bundle_format;
use spire_proto::server as pb;

use super::output::print_json;
use super::{Admin, Output, status_error};

#[derive(Debug, Subcommand)]
pub enum X509Command {
    /// Mints an X509-SVID and prints (or writes) the certificate, key and bundle as PEM.
    Mint {
        /// The SPIFFE ID of the SVID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: SpiffeId,
        /// Lifetime in seconds (0 = server default).
        #[arg(long = "ttl", default_value_t = 0)]
        ttl: i32,
        /// A DNS name to include; repeatable.
        #[arg(long = "dns")]
        dns_names: Vec<String>,
        /// Write svid.pem, key.pem and bundle.pem into this directory instead of printing.
        #[arg(long = "write")]
        write: Option<PathBuf>,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn execute(command: X509Command) -> anyhow::Result<()> {
    let X509Command::Mint {
        spiffe_id,
        ttl,
        dns_names,
        write,
        admin,
    } = command;
    let request = pb::MintX509SvidRequest {
        spiffe_id: spiffe_id.to_string(),
        ttl,
        dns_names,
    };
    let minted = admin
        .client()
        .await?
        .mint_x509_svid(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let svid = minted
        .svid
        .ok_or_else(|| anyhow::anyhow!("server returned no SVID"))?;
    let bundle = minted.bundle.unwrap_or_default();
    let certs: String = svid
        .cert_chain
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
        .collect();
    let key = zeroize::Zeroizing::new(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        minted.private_key,
    )));
    let bundle_pem = bundle_format::to_pem(&bundle);
    match write {
        Some(dir) => {
            write_file(&dir.join("svid.pem"), certs.as_bytes(), 0o644)?;
            write_file(&dir.join("key.pem"), key.as_bytes(), 0o600)?;
            write_file(&dir.join("bundle.pem"), bundle_pem.as_bytes(), 0o644)?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({ "written_to": dir })),
                Output::Pretty => println!(
                    "X509-SVID written to {}\nPrivate key written to {}\nRoot CAs written to {}",
                    dir.join("svid.pem").display(),
                    dir.join("key.pem").display(),
                    dir.join("bundle.pem").display()
                ),
            }
        }
        None => match admin.output {
            Output::Json => print_json(&serde_json::json!({
                "spiffe_id": svid.spiffe_id,
                "expires_at": svid.expires_at,
                "svid": certs,
                "key": key.as_str(),
                "bundle": bundle_pem,
            })),
            Output::Pretty => {
                println!("X509-SVID:\n{certs}");
                println!("Private key:\n{}", key.as_str());
                println!("Root CAs:\n{bundle_pem}");
            }
        },
    }
    Ok(())
}

/// Replaces `path` atomically with `data`, with exactly `mode` (a key file that existed with a
/// wider mode does not keep it).
pub(super) fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    common_process::files::write_atomic(path, data, mode)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
