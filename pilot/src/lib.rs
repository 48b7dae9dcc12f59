//! `spike`, the admin CLI for Nexus.
//!
//! A tour, in the order a command runs:
//!
//! - [`cli`]: the command line as clap types; global options (Nexus URL, trust domain,
//!   Workload API socket, `--format`) come from flags or the environment.
//! - [`input`]: what the user typed, made into typed values before any call: `key=value`
//!   pairs with values from stdin or files, version lists, y/N confirmations.
//! - [`context`]: this process's SVID from the Workload API and a [`nexus_api::Client`]
//!   that presents it to Nexus over mTLS.
//! - [`secret`], [`metadata`], [`policy`], [`status`]: one module per command group, each
//!   making its calls and rendering the answer with pure functions.
//! - [`output`]: the formats (`human`, `json`, `yaml`).
//! - [`error`]: every failure as a sentence that says what to do next.
//!
//! Data goes to stdout, messages to stderr; exit codes are 0 (done), 1 (failed), 2 (bad
//! command line, from clap) and 3 (`status` only: Nexus answered but is not ready).

pub mod cli;
pub mod context;
pub mod error;
pub mod input;
pub mod memory;
pub mod metadata;
pub mod output;
pub mod policy;
pub mod secret;
pub mod status;

pub use cli::Cli;
pub use error::PilotError;
pub use output::Output;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<Output, PilotError> {
    match cli.command {
        cli::Command::Secret(command) => secret::run(command, &cli.global).await,
        cli::Command::Policy(command) => policy::run(command, &cli.global).await,
        cli::Command::Status => status::run(&cli.global).await,
    }
}
