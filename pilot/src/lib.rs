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
//! - [`secret`], [`metadata`], [`policy`], [`status`], [`operator`]: one module per command
//!   group, each making its calls and rendering the answer with pure functions.
//! - [`exec`] and [`render`]: secrets for programs that know nothing of SPIFFE, through
//!   their environment or a file. They share [`fetch`] (current values, picked by key), and
//!   `render` is built from pure parts: [`template`], `common_process::files` (atomic 0600 writes)
//!   and [`reload`] (signalling a process).
//! - [`shard`]: recovery shards as text, `spike:<id>:<hex>`, zeroized on drop.
//! - [`output`]: the formats (`human`, `json`, `yaml`).
//! - [`error`]: every failure as a sentence that says what to do next.
//!
//! Data goes to stdout, messages to stderr; exit codes are 0 (done), 1 (failed), 2 (bad
//! command line, from clap), 3 (`status` only: Nexus answered but is not ready) and 127
//! (`exec` only: the command could not be run).

pub mod cipher;
pub mod cli;
pub mod context;
pub mod error;
pub mod exec;
pub mod fetch;
pub mod input;
pub mod memory;
pub mod metadata;
pub mod operator;
pub mod output;
pub mod policy;
pub mod reload;
pub mod render;
pub mod secret;
pub mod shard;
pub mod status;
pub mod template;

pub use cli::Cli;
pub use error::PilotError;
pub use output::Output;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<Output, PilotError> {
    match cli.command {
        cli::Command::Secret(command) => secret::run(command, &cli.global).await,
        cli::Command::Policy(command) => policy::run(command, &cli.global).await,
        cli::Command::Status => status::run(&cli.global).await,
        cli::Command::Operator(command) => operator::run(command, &cli.global).await,
        cli::Command::Exec(args) => exec::run(args, &cli.global).await,
        cli::Command::Render(args) => render::run(args, &cli.global).await,
        cli::Command::Cipher(command) => cipher::run(command, &cli.global).await,
    }
}
