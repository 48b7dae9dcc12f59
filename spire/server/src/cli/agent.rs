//! `spire-server agent list|show|evict`.

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use super::output::{print_json, time};
use super::{Admin, Output, status_error};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Lists attested agents.
    List {
        #[command(flatten)]
        admin: Admin,
    },
    /// Shows one attested agent.
    Show {
        /// The agent's SPIFFE ID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: SpiffeId,
        #[command(flatten)]
        admin: Admin,
    },
    /// Evicts an agent: it must attest again (with a new join token) to get SVIDs.
    Evict {
        /// The agent's SPIFFE ID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: SpiffeId,
        #[command(flatten)]
        admin: Admin,
    },
}

pub async fn execute(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::List { admin } => {
            let agents = list(&admin).await?;
            print_agents(&agents, admin.output, true);
        }
        AgentCommand::Show { spiffe_id, admin } => {
            let agents: Vec<_> = list(&admin)
                .await?
                .into_iter()
                .filter(|a| a.spiffe_id == spiffe_id.to_string())
                .collect();
            if agents.is_empty() {
                anyhow::bail!("no attested agent has the SPIFFE ID {spiffe_id}");
            }
            print_agents(&agents, admin.output, false);
        }
        AgentCommand::Evict { spiffe_id, admin } => {
            admin
                .client()
                .await?
                .evict_agent(pb::AgentIdRequest {
                    spiffe_id: spiffe_id.to_string(),
                })
                .await
                .map_err(status_error)?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({ "evicted": true })),
                Output::Pretty => println!("Agent evicted successfully"),
            }
        }
    }
    Ok(())
}

async fn list(admin: &Admin) -> anyhow::Result<Vec<pb::AttestedAgent>> {
    Ok(admin
        .client()
        .await?
        .list_agents(pb::Empty {})
        .await
        .map_err(status_error)?
        .into_inner()
        .agents)
}

fn print_agents(agents: &[pb::AttestedAgent], output: Output, count: bool) {
    match output {
        Output::Json => print_json(&serde_json::json!({
            "agents": agents.iter().map(|a| serde_json::json!({
                "id": a.spiffe_id,
                "attestation_type": a.attestation_type,
                "x509svid_serial_number": a.serial_number,
                "x509svid_expires_at": a.expires_at,
                "can_reattest": a.can_reattest,
                "banned": a.banned,
                "selectors": a.selectors.iter().map(|s| serde_json::json!({
                    "type": s.r#type,
                    "value": s.value,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()
        })),
        Output::Pretty => {
            if count {
                let noun = if agents.len() == 1 { "agent" } else { "agents" };
                println!("Found {} attested {noun}:\n", agents.len());
            }
            for a in agents {
                println!("SPIFFE ID         : {}", a.spiffe_id);
                println!("Attestation type  : {}", a.attestation_type);
                println!("Expiration time   : {}", time(a.expires_at));
                println!("Serial number     : {}", a.serial_number);
                for s in &a.selectors {
                    println!("Selector          : {}:{}", s.r#type, s.value);
                }
                println!("Can re-attest     : {}\n", a.can_reattest);
            }
        }
    }
}
