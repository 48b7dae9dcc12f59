//! `spire-agent`: run the agent, check its health, or call its Workload API.

use spire_agent::cli::{Cli, Command};
use spire_agent::config::{AgentConfig, AgentSections, LAYOUT};

fn main() -> std::process::ExitCode {
    // One read of the command line, the environment and (for `run`) the config file; a bad
    // value in any of them is one error here, before anything starts.
    let (cli, sections): (Cli, AgentSections) = common_process::config_file::parse_sectioned_from(
        &LAYOUT,
        spire_proto::flags::normalize(std::env::args()),
    );
    common_process::run_to_exit_code(async {
        match cli.command {
            Command::Run(args) => {
                let config = AgentConfig::load(args, sections)?;
                common_process::init_logging(&config.log_level);
                spire_agent::run::run(config).await
            }
            Command::Healthcheck {
                socket_path,
                output,
            } => spire_agent::cli::healthcheck(socket_path, output).await,
            Command::Api(command) => spire_agent::cli::api::execute(command).await,
        }
    })
}
