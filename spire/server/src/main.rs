//! `spire-server`: run the identity server, or administer a running one.

use spire_server::cli::{self, Cli, Command};
use spire_server::config::{LAYOUT, ServerConfig, ServerSections};

fn main() -> std::process::ExitCode {
    // One read of the command line, the environment and (for `run`) the config file; a bad
    // value in any of them is one error here, before anything starts.
    let (cli, sections): (Cli, ServerSections) = common_process::config_file::parse_sectioned_from(
        &LAYOUT,
        spire_proto::flags::normalize(std::env::args()),
    );
    common_process::run_to_exit_code(async {
        match cli.command {
            Command::Run(args) => {
                let config = ServerConfig::load(args, sections)?;
                common_process::init_logging(&config.log_level);
                spire_server::run::run(config).await
            }
            other => cli::execute(other).await,
        }
    })
}
