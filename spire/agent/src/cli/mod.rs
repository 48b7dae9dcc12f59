//! The `spire-agent` command line: `run`, `healthcheck`, and the Workload API client commands
//! under `api` ([`api`], [`x509`]). Every command that prints takes `-output json`.

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
        /// Output format: pretty or json.
        #[arg(long = "output", default_value = "pretty")]
        output: Output,
    },
    /// Talks to the Workload API as a workload would.
    #[command(subcommand)]
    Api(api::ApiCommand),
}

/// Output format of the commands that print: SPIRE's text, or JSON in the shapes of SPIRE's
/// protobuf JSON (field names as in the Workload API, bytes in standard base64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Pretty,
    Json,
}

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// `spire-agent healthcheck`.
pub async fn healthcheck(socket_path: PathBuf, output: Output) -> anyhow::Result<()> {
    spire_proto::process::healthcheck(&socket_path)
        .await
        .map_err(|e| anyhow::anyhow!("Agent is unhealthy: {e}"))?;
    match output {
        Output::Json => print_json(&serde_json::json!({ "status": "SERVING" })),
        Output::Pretty => println!("Agent is healthy."),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Every command but `run` prints something, so every one takes `-output json`.
    #[test]
    fn every_printing_command_takes_output_json() {
        let commands: [&[&str]; 5] = [
            &["healthcheck"],
            &["api", "fetch", "x509"],
            &["api", "fetch", "jwt", "-audience", "a"],
            &["api", "validate", "jwt", "-audience", "a", "-svid", "t"],
            &["api", "watch"],
        ];
        for args in commands {
            let mut line = vec!["spire-agent"];
            line.extend_from_slice(args);
            line.extend_from_slice(&["-output", "json"]);
            let line = spire_proto::flags::normalize(line.into_iter().map(String::from));
            if let Err(e) = super::Cli::try_parse_from(&line) {
                panic!("{line:?}: {e}");
            }
        }
        fn leaves(cmd: &clap::Command) -> usize {
            cmd.get_subcommands().map(leaves).sum::<usize>().max(1)
        }
        assert_eq!(
            leaves(&super::Cli::command()),
            1 + commands.len(),
            "`run` and the commands listed above"
        );
    }
}
