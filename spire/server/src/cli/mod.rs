//! The `spire-server` command line. `run` starts the server; every other command talks to a
//! running server over its admin socket. Flags follow SPIRE's (`-spiffeID`, `-parentID`, ...);
//! `-output json` prints machine-readable results.

mod agent;
mod bundle;
mod entry;
mod entry_batch;
mod federation;
mod federation_data;
mod jwt;
mod output;
mod token;
mod x509;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use spire_proto::server::admin_client::AdminClient;
use tonic::transport::Channel;

use crate::config::{DEFAULT_SOCKET_PATH, RunArgs};
pub use output::Output;

/// SPIFFE identity server.
#[derive(Debug, Parser)]
#[command(name = "spire-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Connection flags shared by the admin commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Admin {
    /// Path to the server's admin socket.
    #[arg(long = "socketPath", env = "SPIRE_SERVER_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Output format: pretty or json.
    #[arg(long = "output", default_value = "pretty")]
    pub output: Output,
}

impl Admin {
    async fn client(&self) -> anyhow::Result<AdminClient<Channel>> {
        let channel = spire_proto::uds::connect(&self.socket_path).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the server at {}: {e} (is `spire-server run` running with this -socketPath?)",
                self.socket_path.display()
            )
        })?;
        Ok(AdminClient::new(channel))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server.
    Run(RunArgs),
    /// Checks that the server is up and answering on its admin socket.
    Healthcheck(Admin),
    /// Manages registration entries.
    #[command(subcommand)]
    Entry(entry::EntryCommand),
    /// Manages join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Shows the trust bundle.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Manages attested agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Mints X509-SVIDs outside the agent flow.
    #[command(subcommand)]
    X509(x509::X509Command),
    /// Mints JWT-SVIDs outside the agent flow.
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
    /// Manages federation relationships with other trust domains.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
}

/// Runs an admin command (everything but `run`).
pub async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(_) => unreachable!("`run` is handled by main"),
        Command::Healthcheck(admin) => healthcheck(&admin).await,
        Command::Entry(cmd) => entry::execute(cmd).await,
        Command::Token(cmd) => token::execute(cmd).await,
        Command::Bundle(cmd) => bundle::execute(cmd).await,
        Command::Agent(cmd) => agent::execute(cmd).await,
        Command::X509(cmd) => x509::execute(cmd).await,
        Command::Jwt(cmd) => jwt::execute(cmd).await,
        Command::Federation(cmd) => federation::execute(cmd).await,
    }
}

async fn healthcheck(admin: &Admin) -> anyhow::Result<()> {
    spire_proto::process::healthcheck(&admin.socket_path)
        .await
        .map_err(|e| anyhow::anyhow!("Server is unhealthy: {e}"))?;
    match admin.output {
        Output::Json => output::print_json(&serde_json::json!({ "status": "SERVING" })),
        Output::Pretty => println!("Server is healthy."),
    }
    Ok(())
}

/// Turns a gRPC error into the message a user should see.
pub(crate) fn status_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command but `run` prints something, so every one takes `-output json`.
    #[test]
    fn every_admin_command_takes_output_json() {
        fn leaves<'a>(
            cmd: &'a clap::Command,
            path: String,
            out: &mut Vec<(String, &'a clap::Command)>,
        ) {
            for sub in cmd.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
            if cmd.get_subcommands().next().is_none() {
                out.push((path, cmd));
            }
        }
        let cli = super::Cli::command();
        let mut all = Vec::new();
        leaves(&cli, String::new(), &mut all);
        let commands: Vec<_> = all.iter().filter(|(path, _)| path != " run").collect();
        assert!(commands.len() > 20, "{} commands", commands.len());
        for (path, cmd) in commands {
            let output = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some("output"))
                .unwrap_or_else(|| panic!("`spire-server{path}` has no -output"));
            let values: Vec<_> = output
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_owned())
                .collect();
            assert!(values.contains(&"json".to_owned()), "{path}: {values:?}");
        }
    }
}
