//! `spire-server jwt mint`: a JWT-SVID straight from the server's JWT key, as SPIRE's command.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use super::output::print_json;
use super::x509::write_file;
use super::{Admin, Output, status_error};

#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Mints a JWT-SVID and prints the token (or writes it to a file).
    Mint {
        /// The SPIFFE ID of the JWT-SVID (its `sub`).
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: SpiffeId,
        /// An audience for the token (its `aud`); repeatable, at least one.
        #[arg(long = "audience", required = true)]
        audience: Vec<String>,
        /// Lifetime, e.g. `5m`, `90s` or a number of seconds (default: the server's
        /// default_jwt_svid_ttl).
        #[arg(long = "ttl", value_parser = parse_ttl)]
        ttl: Option<i32>,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long = "write")]
        write: Option<PathBuf>,
        #[command(flatten)]
        admin: Admin,
    },
}

/// A TTL as `humantime` writes it (`5m`, `1h30m`) or plain seconds, in whole seconds.
fn parse_ttl(raw: &str) -> Result<i32, String> {
    let duration = match raw.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            humantime::parse_duration(raw).map_err(|e| format!("invalid TTL {raw:?}: {e}"))?
        }
    };
    i32::try_from(duration.as_secs())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("invalid TTL {raw:?}: must be at least 1s"))
}

pub async fn execute(command: JwtCommand) -> anyhow::Result<()> {
    let JwtCommand::Mint {
        spiffe_id,
        audience,
        ttl,
        write,
        admin,
    } = command;
    let request = pb::MintJwtSvidRequest {
        spiffe_id: spiffe_id.to_string(),
        audience,
        ttl: ttl.unwrap_or(0),
    };
    let svid = admin
        .client()
        .await?
        .mint_jwt_svid(request)
        .await
        .map_err(status_error)?
        .into_inner()
        .svid
        .ok_or_else(|| anyhow::anyhow!("server returned no JWT-SVID"))?;
    match (write, admin.output) {
        (Some(path), output) => {
            write_file(&path, format!("{}\n", svid.token).as_bytes(), 0o600)?;
            match output {
                Output::Json => print_json(&serde_json::json!({ "written_to": path })),
                Output::Pretty => println!("JWT-SVID written to {}", path.display()),
            }
        }
        (None, Output::Json) => print_json(&serde_json::json!({
            "spiffe_id": svid.spiffe_id,
            "issued_at": svid.issued_at,
            "expires_at": svid.expires_at,
            "token": svid.token,
        })),
        (None, Output::Pretty) => println!("{}", svid.token),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_accepts_durations_and_seconds() {
        assert_eq!(parse_ttl("5m"), Ok(300));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
