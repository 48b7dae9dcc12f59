//! `spire-server agent list|show|count|evict|ban|purge`.

use clap::Subcommand;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use super::output::{print_count, print_json, time};
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
    /// Counts attested agents.
    Count {
        #[command(flatten)]
        admin: Admin,
    },
    /// Bans an agent: it is refused every call and cannot attest again until it is evicted.
    Ban {
        /// The agent's SPIFFE ID.
        #[arg(long = "spiffeID", value_parser = spire_proto::flags::canonical_spiffe_id)]
        spiffe_id: SpiffeId,
        #[command(flatten)]
        admin: Admin,
    },
    /// Deletes agents whose SVID expired more than -expiredFor ago (banned ones stay).
    Purge {
        /// How long ago the SVID must have expired, e.g. `720h`, `30m`.
        #[arg(long = "expiredFor", default_value = "720h")]
        expired_for: String,
        /// Only list the agents that would be purged.
        #[arg(long = "dryRun")]
        dry_run: bool,
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
        AgentCommand::Count { admin } => {
            let count = admin
                .client()
                .await?
                .count_agents(pb::Empty {})
                .await
                .map_err(status_error)?
                .into_inner()
                .count;
            print_count(admin.output, count, "attested", "agent", "agents");
        }
        AgentCommand::Ban { spiffe_id, admin } => {
            admin
                .client()
                .await?
                .ban_agent(pb::AgentIdRequest {
                    spiffe_id: spiffe_id.to_string(),
                })
                .await
                .map_err(status_error)?;
            match admin.output {
                Output::Json => print_json(&serde_json::json!({ "banned": true })),
                Output::Pretty => println!("Agent banned successfully"),
            }
        }
        AgentCommand::Purge {
            expired_for,
            dry_run,
            admin,
        } => purge(&expired_for, dry_run, &admin).await?,
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

async fn purge(expired_for: &str, dry_run: bool, admin: &Admin) -> anyhow::Result<()> {
    let age = humantime::parse_duration(expired_for)
        .map_err(|e| anyhow::anyhow!("invalid -expiredFor {expired_for:?}: {e}"))?;
    let age = i64::try_from(age.as_secs())
        .map_err(|_| anyhow::anyhow!("-expiredFor {expired_for:?} is too long"))?;
    let now = identity::clock::Clock::system().unix_seconds();
    let agents = admin
        .client()
        .await?
        .purge_agents(pb::PurgeAgentsRequest {
            expired_before: now.saturating_sub(age),
            dry_run,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .agents;
    match admin.output {
        Output::Json => print_json(&serde_json::json!({
            "expired_agents": agents.iter().map(|a| serde_json::json!({
                "agent_id": a.spiffe_id,
                "deleted": !dry_run,
            })).collect::<Vec<_>>()
        })),
        Output::Pretty => {
            let noun = if agents.len() == 1 { "agent" } else { "agents" };
            println!("Found {} expired {noun}\n", agents.len());
            for a in &agents {
                println!("SPIFFE ID         : {}", a.spiffe_id);
                println!("Expiration time   : {}", time(a.expires_at));
            }
            if dry_run {
                println!("\nDry run: no agent was purged");
            } else {
                println!("\nAgents purged: {}", agents.len());
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
