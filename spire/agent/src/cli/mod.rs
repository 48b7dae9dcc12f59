//! The `spire-agent` command line: `run`, `healthcheck`, and the Workload API client commands
//! under `api` ([`api`], [`x509`]).

pub mod api;
pub mod x509;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DEFAULT_SOCKET_PATH, RunArgs};

/// SPIFFE agent: attests this node and serves the Workload API to local workloads.
#[derive(Debug, Parser)]
#[command(name = "spire-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the agent.
    Run(RunArgs),
    /// Checks that the agent is up and serving the Workload API (gRPC health on its socket).
    Healthcheck {
        /// Path of the Workload API socket.
        #[arg(long = "socketPath", env = "SPIRE_AGENT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
        socket_path: PathBuf,
    },
    /// Talks to the Workload API as a workload would.
    #[command(subcommand)]
    Api(api::ApiCommand),
}

/// `spire-agent healthcheck`.
pub async fn healthcheck(socket_path: PathBuf) -> anyhow::Result<()> {
    spire_proto::process::healthcheck(&socket_path)
        .await
        .map_err(|e| anyhow::anyhow!("Agent is unhealthy: {e}"))?;
    println!("Agent is healthy.");
    Ok(())
}
