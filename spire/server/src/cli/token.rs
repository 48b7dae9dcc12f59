//! `spire-server token generate`.

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use super::output::print_json;
use super::{Admin, Output, status_error};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Generates a single-use join token for attesting an agent.
    Generate {
        /// Also create an alias entry with this SPIFFE ID for the agent, so entries can be
        /// parented to it.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: Option<SpiffeId>,
        /// Token lifetime in seconds.
        #[arg(long = "ttl", default_value_t = 600)]
        ttl: i32,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn execute(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Generate {
        spiffe_id,
        ttl,
        admin,
    } = command;
    let request = pb::CreateJoinTokenRequest {
        ttl,
        alias_spiffe_id: spiffe_id.map(|id| id.to_string()).unwrap_or_default(),
    };
    let token = admin
        .client()
        .await?
        .create_join_token(request)
        .await
        .map_err(status_error)?
        .into_inner();
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "value": token.token,
            "expires_at": token.expires_at,
        })),
        Output::Pretty => println!("Token: {}", token.token),
    }
    Ok(())
}
