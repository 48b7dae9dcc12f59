//! The command line, as clap types: global connection options, then one subcommand per
//! operation. Parsing stops at syntax; reading values and talking to Nexus happen in the
//! command modules.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use nix::sys::signal::Signal;

use crate::exec::SecretBinding;
use crate::input::VersionList;
use crate::output::Format;
use crate::reload::parse_signal;

/// Where Nexus listens unless told otherwise (SPIKE's default).
pub const DEFAULT_NEXUS_URL: &str = "https://localhost:8553";

/// Shown under `--help`: what the exit codes mean.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (the message on stderr says why and what to do)
  2  invalid command line
  3  `spike status` only: Nexus answered but is not ready (uninitialized or sealed)
  127  `spike exec` only: the command could not be run (otherwise its own exit code)

Data goes to stdout, messages to stderr. Secret values are shown in plain text by design.";

/// `spike`: manage the secrets and policies of a Nexus over SPIFFE mTLS.
///
/// This process gets its identity (X.509-SVID) from the SPIFFE Workload API; Nexus authorises
/// it by that SPIFFE ID. Admin work needs the Pilot superuser ID
/// (`spiffe://<trust domain>/spike/pilot/role/superuser`), other IDs get what policies grant.
#[derive(Debug, Parser)]
#[command(name = "spike", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where Nexus is and how to reach it.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts, before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// TOML file whose keys (these global options in snake case, e.g. `nexus_url = "..."`)
    /// set defaults that flags and environment variables override.
    #[arg(long, env = "SPIKE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Nexus's API URL.
    #[arg(
        long,
        env = "SPIKE_NEXUS_API_URL",
        default_value = DEFAULT_NEXUS_URL,
        global = true
    )]
    pub nexus_url: String,

    /// Nexus's trust domain; its SVID must be spiffe://<this>/spike/nexus. A comma-separated
    /// list (as SPIKE allows) picks this process's own trust domain if listed, else the first.
    /// Default: the trust domain of this process's own SVID.
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS", global = true)]
    pub trust_domain: Option<String>,

    /// The SPIFFE Workload API socket, e.g. unix:///run/spire/agent.sock.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", global = true)]
    pub spiffe_endpoint_socket: Option<String>,

    /// Output format: human (h, plain, p), json (j) or yaml (y).
    #[arg(short, long, value_enum, default_value_t = Format::Human, global = true)]
    pub format: Format,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write, read, list, delete and destroy secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage the policies that grant workloads access to secrets.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show whether Nexus is ready and how many keepers it reaches.
    ///
    /// Exits 0 when Nexus is ready, 3 when it answered but is not ready (uninitialized or
    /// sealed), 1 when it could not be asked.
    Status,
    /// Operate the root key: seal and unseal Nexus, rotate the key, and break-glass (save
    /// its shards, restore Nexus from them).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Run a command with secrets in its environment (for programs that read only that).
    ///
    /// Every --secret is fetched with this process's SVID first; if any fails, nothing runs.
    /// Then spike replaces itself with CMD (same PID, so signals and the exit code are
    /// CMD's), which inherits spike's environment plus the variables set here. Exit code
    /// 127 means CMD could not be run.
    ///
    /// Example: spike exec --secret db/creds:password=DB_PASSWORD -- ./server --port 80
    Exec(ExecArgs),
    /// Render secrets into a file from a template, once or whenever they change.
    ///
    /// The template is text with {{ secret "PATH" "KEY" }} where a value goes; no other
    /// {{ ... }} is allowed. FILE is replaced atomically (mode 0600) and only when its
    /// content changes; after a change, --signal tells a process to reload.
    Render(RenderArgs),
    /// Encrypt or decrypt with Nexus's cipher (encryption as a service).
    ///
    /// The key never leaves Nexus and is not the one that protects stored secrets. Needs the
    /// superuser, the lite workload role, or `execute` on spike/system/cipher/exec.
    #[command(subcommand)]
    Cipher(CipherCommand),
}

/// `spike cipher ...`
#[derive(Debug, Subcommand)]
pub enum CipherCommand {
    /// Encrypt bytes (stdin or --file) to `0x01 ‖ nonce ‖ ciphertext` (stdout or --out); with
    /// --plaintext, JSON mode: prints {version, nonce, ciphertext} (base64).
    Encrypt(EncryptArgs),
    /// Decrypt what `encrypt` produced (stdin or --file); with --nonce and --ciphertext,
    /// JSON mode.
    Decrypt(DecryptArgs),
}

/// `spike cipher encrypt`
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// Read the plaintext from FILE instead of stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "plaintext")]
    pub file: Option<PathBuf>,
    /// Write the result to FILE (mode 0600) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// JSON mode: the plaintext as standard base64.
    #[arg(long, value_name = "BASE64")]
    pub plaintext: Option<String>,
    /// Accepted for SPIKE compatibility; the algorithm is always AES-256-GCM.
    #[arg(long, hide = true)]
    pub algorithm: Option<String>,
}

/// `spike cipher decrypt`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("json").args(["nonce", "ciphertext"]).multiple(true)))]
pub struct DecryptArgs {
    /// Read the stream-mode ciphertext from FILE instead of stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub file: Option<PathBuf>,
    /// Write the plaintext to FILE (mode 0600) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// JSON mode: the format version.
    #[arg(long, default_value_t = 1)]
    pub version: u8,
    /// JSON mode: the nonce, standard base64.
    #[arg(long, value_name = "BASE64", requires = "ciphertext")]
    pub nonce: Option<String>,
    /// JSON mode: the ciphertext, standard base64.
    #[arg(long, value_name = "BASE64", requires = "nonce")]
    pub ciphertext: Option<String>,
    /// Accepted for SPIKE compatibility; the algorithm is always AES-256-GCM.
    #[arg(long, hide = true)]
    pub algorithm: Option<String>,
}

/// `spike operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Save every shard of the root key to its own file (needs the recover role).
    ///
    /// Needs the SPIFFE ID spiffe://<trust domain>/spike/pilot/role/recover and a ready
    /// Nexus. Writes DIR/spike.recovery.<id>.txt, readable only by you; store them apart
    /// and offline.
    Recover(RecoverArgs),
    /// Give one saved shard back to a sealed Nexus (needs the restore role).
    ///
    /// Needs the SPIFFE ID spiffe://<trust domain>/spike/pilot/role/restore. Reads one
    /// shard (spike:<id>:<hex>, the content of a recovery file) without echo on a
    /// terminal, or one line from stdin. Run it once per shard until Nexus is restored.
    Restore,
    /// Replace the root key with a new one (needs the superuser).
    ///
    /// Every data key is re-wrapped under the new key in one transaction while reads go on;
    /// keepers then get their new shards. Recovery shards saved before no longer work: run
    /// `spike operator recover` again afterwards.
    Rotate,
    /// Incident response: take the root key out of Nexus's memory at once (needs the
    /// superuser).
    ///
    /// Every data request is refused (503, "Nexus is sealed") until `spike operator unseal`,
    /// a restart of Nexus included, and every other Nexus replica on the same database seals
    /// too. `spike status` shows who sealed it and when.
    Seal,
    /// Lift an operator's seal: Nexus takes its root key back from the keepers (needs the
    /// superuser).
    ///
    /// Waits a few seconds for Nexus to be ready; exits 3 if it is not yet (the keepers are
    /// asked again until it is; see `spike status`).
    Unseal,
    /// Change the keepers and the threshold while Nexus runs (needs the superuser).
    ///
    /// Every new keeper gets its shard before the new set is stored, and the old keepers
    /// forget theirs only after: killed at any moment, Nexus unseals from the old set or the
    /// new one. The new set is stored and wins over the keepers Nexus is configured with.
    /// Recovery shards saved before no longer work: run `spike operator recover` again.
    Rekey(RekeyArgs),
}

/// `spike operator rekey`
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The new keepers' URLs, comma-separated, in shard order (the first holds shard 1).
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub keepers: Vec<String>,
    /// Shards needed to rebuild the root key (2 to the number of keepers).
    #[arg(long, value_name = "N")]
    pub threshold: u8,
    /// Also replace the root key (as `spike operator rotate`), its shards going to the new
    /// keepers.
    #[arg(long)]
    pub new_root_key: bool,
}

/// `spike operator recover`
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Directory for the shard files (created 0700 if missing). Default: $HOME/.spike/recover.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Replace recovery files already in DIR.
    #[arg(long)]
    pub force: bool,
}

/// `spike exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Set ENV to KEY of the secret at PATH (current version); without :KEY the secret must
    /// have exactly one key. Repeat for more variables.
    #[arg(long = "secret", required = true, value_name = "PATH[:KEY]=ENV")]
    pub secrets: Vec<SecretBinding>,
    /// The command and its arguments (after `--` if an argument could look like an option).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// `spike render`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").args(["pid", "pid_file"]).multiple(false)))]
pub struct RenderArgs {
    /// Template file.
    #[arg(long, value_name = "FILE")]
    pub template: PathBuf,
    /// File to write (replaced atomically, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Keep running: fetch again every --interval and re-render on change, until SIGINT or
    /// SIGTERM. A failed fetch is reported and retried; the file stays as it was.
    #[arg(long, conflicts_with = "once")]
    pub watch: bool,
    /// How often --watch fetches, e.g. 5s, 1m, 1h 30m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_interval, requires = "watch")]
    pub interval: Duration,
    /// Signal to send after the file changed, e.g. HUP, USR1 (needs --pid or --pid-file).
    #[arg(long, value_name = "SIGNAL", value_parser = parse_signal, requires = "target")]
    pub signal: Option<Signal>,
    /// Process to signal.
    #[arg(long, value_name = "PID", requires = "signal", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// File holding the PID of the process to signal (read at each signal).
    #[arg(long, value_name = "FILE", requires = "signal")]
    pub pid_file: Option<PathBuf>,
    /// Render once and exit (the default without --watch).
    #[arg(long)]
    pub once: bool,
}

/// `--interval`: a humantime duration above zero.
fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(interval) if interval.is_zero() => Err("the interval must be longer than 0".into()),
        Ok(interval) => Ok(interval),
        Err(e) => Err(format!("{e} (e.g. 5s, 1m, 1h 30m)")),
    }
}

/// `spike secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a new version of a secret (it replaces every key of the previous version).
    ///
    /// Each pair is key=value. So that values need not appear in shell history or the process
    /// list: key=- reads the value from stdin (one key at most; from a pipe, one trailing
    /// newline is removed; on a terminal, one line is read without echo) and key=@FILE reads
    /// it from FILE exactly as stored (nothing is removed). A literal value that is `-` or
    /// starts with `@` must therefore come from stdin or a file. A pair without `=` is an
    /// error, and then nothing is written.
    Put(PutArgs),
    /// Read a secret: every key, or the bare value of one key.
    Get(GetArgs),
    /// Write a new version made of the current one with these keys set (others are kept).
    ///
    /// Pairs are read as for `put` (key=value, key=- from stdin, key=@FILE). The secret must
    /// exist and have a current version. --cas makes it a check-and-set.
    Patch(PutArgs),
    /// List the secret paths this process may read.
    List(ListArgs),
    /// Soft-delete versions of a secret (they can be undeleted).
    Delete(VersionsArgs),
    /// Restore soft-deleted versions of a secret.
    Undelete(VersionsArgs),
    /// Destroy versions for good; without --versions, the whole secret and its metadata.
    Destroy(DestroyArgs),
    /// Secret metadata.
    #[command(subcommand)]
    Metadata(MetadataCommand),
}

/// `spike secret put`
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Secret path, e.g. db/password.
    pub path: String,
    /// key=value, key=- (stdin) or key=@FILE; at least one.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub pairs: Vec<String>,
    /// Check-and-set: write only if the current version is N (0: only if the secret does not
    /// exist yet).
    #[arg(long, value_name = "N")]
    pub cas: Option<u64>,
}

/// `spike secret get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Secret path.
    pub path: String,
    /// Print only this key's value.
    pub key: Option<String>,
    /// Version to read (0: the current one).
    #[arg(short, long, default_value_t = 0, value_name = "N")]
    pub version: u64,
}

/// `spike secret list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show only paths starting with this (Nexus filters).
    pub prefix: Option<String>,
    /// Paths per request to Nexus; every page is fetched and shown.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub page_size: i64,
}

/// `spike secret delete|undelete`
#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// Secret path.
    pub path: String,
    /// Comma-separated versions, e.g. "1,2,0" (0: the current one). Default: the current one.
    #[arg(short, long, value_name = "LIST")]
    pub versions: Option<VersionList>,
}

/// `spike secret destroy`
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Secret path.
    pub path: String,
    /// Comma-separated versions to destroy (0: the current one). Without it, the whole secret
    /// is destroyed, which needs --yes or a confirmation on a terminal.
    #[arg(short, long, value_name = "LIST")]
    pub versions: Option<VersionList>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// `spike secret metadata ...`
#[derive(Debug, Subcommand)]
pub enum MetadataCommand {
    /// Show a secret's settings, custom metadata, versions and who wrote them.
    Get(MetadataGetArgs),
    /// Change a secret's settings without writing a version (creates the secret, without
    /// versions, if it does not exist). Options not given are kept.
    Put(MetadataPutArgs),
    /// Delete the secret, every version and its metadata, for good (as `secret destroy`
    /// without --versions).
    Delete(MetadataDeleteArgs),
}

/// `spike secret metadata put`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").args(["max_versions", "cas_required", "delete_version_after", "custom_metadata"]).multiple(true).required(true)))]
pub struct MetadataPutArgs {
    /// Secret path.
    pub path: String,
    /// Versions to keep (0: Nexus's default); older ones are removed at once.
    #[arg(long, value_name = "N")]
    pub max_versions: Option<u32>,
    /// Whether every write (put, patch) must give --cas.
    #[arg(long, value_name = "BOOL")]
    pub cas_required: Option<bool>,
    /// Versions older than this become unreadable and are removed, e.g. 30m, 1h, 7d; 0s:
    /// never.
    #[arg(long, value_name = "DURATION")]
    pub delete_version_after: Option<String>,
    /// A label, key=value (repeat for more). Replaces every label the secret had; not
    /// secret (anyone who may read the secret sees it).
    #[arg(long, value_name = "KEY=VALUE")]
    pub custom_metadata: Vec<String>,
}

/// `spike secret metadata delete`
#[derive(Debug, Args)]
pub struct MetadataDeleteArgs {
    /// Secret path.
    pub path: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

/// `spike secret metadata get`
#[derive(Debug, Args)]
pub struct MetadataGetArgs {
    /// Secret path.
    pub path: String,
    /// Show only this version (0: every version).
    #[arg(short, long, default_value_t = 0, value_name = "N")]
    pub version: u64,
}

/// `spike policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy; fails if one with that name exists.
    Create(PolicyFields),
    /// Create or replace a policy, from a YAML file or from flags.
    ///
    /// The file has the keys name, spiffeidPattern, pathPattern and permissions (a list).
    Apply(ApplyArgs),
    /// List policies, optionally only those with exactly this pattern.
    List(PolicyListArgs),
    /// Show one policy.
    Get(PolicyNameArgs),
    /// Delete a policy (asks for confirmation unless --yes).
    Delete(PolicyDeleteArgs),
}

/// The four fields of a policy, all required (`spike policy create`).
#[derive(Debug, Args)]
pub struct PolicyFields {
    /// Unique name (letters, digits, spaces, `_` and `-`).
    #[arg(long)]
    pub name: String,
    /// Regular expression the caller's whole SPIFFE ID must match.
    #[arg(long, value_name = "REGEX")]
    pub spiffeid_pattern: String,
    /// Regular expression the whole secret path must match.
    #[arg(long, value_name = "REGEX")]
    pub path_pattern: String,
    /// Comma-separated: read, write, list, execute, super.
    #[arg(long, value_delimiter = ',', required = true, value_name = "LIST")]
    pub permissions: Vec<String>,
}

/// `spike policy apply`: a file, or every field as a flag.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// YAML policy file (`-`: stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "spiffeid_pattern", "path_pattern", "permissions"])]
    pub file: Option<PathBuf>,
    /// Unique name (letters, digits, spaces, `_` and `-`).
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// Regular expression the caller's whole SPIFFE ID must match.
    #[arg(long, value_name = "REGEX", required_unless_present = "file")]
    pub spiffeid_pattern: Option<String>,
    /// Regular expression the whole secret path must match.
    #[arg(long, value_name = "REGEX", required_unless_present = "file")]
    pub path_pattern: Option<String>,
    /// Comma-separated: read, write, list, execute, super.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LIST",
        required_unless_present = "file"
    )]
    pub permissions: Vec<String>,
}

/// `spike policy list`
#[derive(Debug, Args)]
pub struct PolicyListArgs {
    /// Only policies whose SPIFFE ID pattern is exactly this.
    #[arg(long, value_name = "PATTERN", conflicts_with = "path_pattern")]
    pub spiffeid_pattern: Option<String>,
    /// Only policies whose path pattern is exactly this.
    #[arg(long, value_name = "PATTERN")]
    pub path_pattern: Option<String>,
}

/// A policy named by argument or by `--name` (exactly one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PolicyNameArgs {
    /// The policy's name.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The policy's name (same as the argument).
    #[arg(long = "name", value_name = "NAME")]
    pub name_flag: Option<String>,
}

impl PolicyNameArgs {
    /// The name, from whichever form was given.
    pub fn name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.name_flag.as_deref())
            .unwrap_or_default()
    }
}

/// `spike policy delete`
#[derive(Debug, Args)]
pub struct PolicyDeleteArgs {
    /// Which policy.
    #[command(flatten)]
    pub name: PolicyNameArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("spike").chain(args.iter().copied()))
    }

    #[test]
    fn the_example_config_file_sets_global_options() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config/spike.toml");
        let cli: Cli = common_process::config_file::try_parse_from([
            "spike", "secret", "list", "--config", path,
        ])
        .expect("valid");
        assert_eq!(cli.global.nexus_url, "https://127.0.0.1:8553");
        assert_eq!(cli.global.trust_domain.as_deref(), Some("example.org"));
        let cli: Cli = common_process::config_file::try_parse_from([
            "spike", "--config", path, "-f", "json", "status",
        ])
        .expect("valid");
        assert_eq!(cli.global.format, Format::Json, "flags override the file");
        assert!(matches!(cli.command, Command::Status));
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn format_is_global_and_has_aliases() {
        for (flag, want) in [
            ("json", Format::Json),
            ("j", Format::Json),
            ("yaml", Format::Yaml),
            ("y", Format::Yaml),
            ("human", Format::Human),
            ("h", Format::Human),
            ("plain", Format::Human),
            ("p", Format::Human),
        ] {
            let cli = parse(&["secret", "get", "x", "-f", flag]).expect("parses");
            assert_eq!(cli.global.format, want, "{flag}");
        }
        let cli = parse(&["--format", "yaml", "status"]).expect("before the subcommand");
        assert_eq!(cli.global.format, Format::Yaml);
        let cli = parse(&["status"]).expect("default");
        assert_eq!(cli.global.format, Format::Human);
        assert!(parse(&["status", "-f", "xml"]).is_err());
    }

    #[test]
    fn format_flag_may_follow_pairs() {
        let cli = parse(&[
            "secret", "put", "db", "a=1", "b=-", "-f", "json", "--cas", "2",
        ])
        .expect("parses");
        assert_eq!(cli.global.format, Format::Json);
        match cli.command {
            Command::Secret(SecretCommand::Put(put)) => {
                assert_eq!(put.pairs, ["a=1", "b=-"]);
                assert_eq!(put.cas, Some(2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn put_needs_a_pair() {
        assert!(parse(&["secret", "put", "db"]).is_err());
    }

    #[test]
    fn connection_options_are_global() {
        let cli = parse(&[
            "secret",
            "list",
            "--nexus-url",
            "https://n:1",
            "--trust-domain",
            "td",
            "--spiffe-endpoint-socket",
            "unix:///s",
        ])
        .expect("parses");
        assert_eq!(cli.global.nexus_url, "https://n:1");
        assert_eq!(cli.global.trust_domain.as_deref(), Some("td"));
        assert_eq!(
            cli.global.spiffe_endpoint_socket.as_deref(),
            Some("unix:///s")
        );
    }

    #[test]
    fn versions_are_parsed_at_the_edge() {
        let cli = parse(&["secret", "delete", "db", "-v", "1, 2,0"]).expect("parses");
        match cli.command {
            Command::Secret(SecretCommand::Delete(args)) => {
                assert_eq!(args.versions.map(|v| v.0), Some(vec![1, 2, 0]));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["secret", "undelete", "db", "--versions", "1,x"]).is_err());
        assert!(parse(&["secret", "destroy", "db", "-v", ""]).is_err());
    }

    #[test]
    fn policy_list_filters_are_exclusive() {
        assert!(parse(&["policy", "list", "--spiffeid-pattern", "a"]).is_ok());
        assert!(parse(&["policy", "list", "--path-pattern", "b"]).is_ok());
        let both = parse(&[
            "policy",
            "list",
            "--spiffeid-pattern",
            "a",
            "--path-pattern",
            "b",
        ]);
        assert_eq!(
            both.map(|_| ()).map_err(|e| e.kind()),
            Err(clap::error::ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn policy_name_by_argument_or_flag_but_not_both() {
        for args in [
            &["policy", "get", "p"][..],
            &["policy", "get", "--name", "p"][..],
        ] {
            match parse(args).expect("parses").command {
                Command::Policy(PolicyCommand::Get(name)) => assert_eq!(name.name(), "p"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(parse(&["policy", "get"]).is_err());
        assert!(parse(&["policy", "get", "p", "--name", "q"]).is_err());
        let cli = parse(&["policy", "delete", "p", "--yes"]).expect("parses");
        match cli.command {
            Command::Policy(PolicyCommand::Delete(d)) => {
                assert!(d.yes);
                assert_eq!(d.name.name(), "p");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn policy_create_needs_every_field() {
        let ok = parse(&[
            "policy",
            "create",
            "--name",
            "n",
            "--spiffeid-pattern",
            "a",
            "--path-pattern",
            "b",
            "--permissions",
            "read,write",
        ])
        .expect("parses");
        match ok.command {
            Command::Policy(PolicyCommand::Create(f)) => {
                assert_eq!(f.permissions, ["read", "write"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["policy", "create", "--name", "n"]).is_err());
    }

    #[test]
    fn policy_apply_takes_a_file_or_flags() {
        assert!(parse(&["policy", "apply", "--file", "p.yaml"]).is_ok());
        assert!(
            parse(&[
                "policy",
                "apply",
                "--name",
                "n",
                "--spiffeid-pattern",
                "a",
                "--path-pattern",
                "b",
                "--permissions",
                "read",
            ])
            .is_ok()
        );
        assert!(parse(&["policy", "apply"]).is_err());
        assert!(parse(&["policy", "apply", "--name", "n"]).is_err());
        assert!(parse(&["policy", "apply", "--file", "p.yaml", "--name", "n"]).is_err());
    }

    #[test]
    fn operator_commands() {
        match parse(&["operator", "recover"]).expect("parses").command {
            Command::Operator(OperatorCommand::Recover(args)) => {
                assert_eq!(args.dir, None);
                assert!(!args.force);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&[
            "operator", "recover", "--dir", "/safe", "--force", "-f", "json",
        ])
        .expect("parses");
        assert_eq!(cli.global.format, Format::Json);
        match cli.command {
            Command::Operator(OperatorCommand::Recover(args)) => {
                assert_eq!(args.dir, Some(PathBuf::from("/safe")));
                assert!(args.force);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(&["operator", "restore"]).expect("parses").command,
            Command::Operator(OperatorCommand::Restore)
        ));
        for (word, sealing) in [("seal", true), ("unseal", false)] {
            match parse(&["operator", word]).expect("parses").command {
                Command::Operator(OperatorCommand::Seal) => assert!(sealing),
                Command::Operator(OperatorCommand::Unseal) => assert!(!sealing),
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                parse(&["operator", word, "now"]).is_err(),
                "takes no argument"
            );
        }
        // The shard never goes on the command line, where `ps` and shell history see it.
        assert!(parse(&["operator", "restore", "spike:1:00"]).is_err());
        assert!(parse(&["operator"]).is_err());
    }

    fn exec_args(args: &[&str]) -> Result<ExecArgs, clap::Error> {
        match parse(args)?.command {
            Command::Exec(exec) => Ok(exec),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn exec_takes_bindings_then_the_command() {
        let exec = exec_args(&[
            "exec",
            "--secret",
            "db/creds:password=DB_PASSWORD",
            "--secret",
            "api/token=TOKEN",
            "--",
            "server",
            "--port",
            "80",
            "-f",
            "json",
        ])
        .expect("parses");
        assert_eq!(exec.secrets.len(), 2);
        assert_eq!(exec.secrets[0].key.as_deref(), Some("password"));
        assert_eq!(exec.secrets[1].env, "TOKEN");
        assert_eq!(exec.command, ["server", "--port", "80", "-f", "json"]);

        // Without `--`, everything from the command on is the command's.
        let exec = exec_args(&["exec", "--secret", "p=X", "env", "-0", "--secret", "q=Y"])
            .expect("parses");
        assert_eq!(exec.secrets.len(), 1);
        assert_eq!(exec.command, ["env", "-0", "--secret", "q=Y"]);
    }

    #[test]
    fn exec_refuses_bad_command_lines() {
        let kind = |args: &[&str]| exec_args(args).map(|_| ()).map_err(|e| e.kind());
        assert!(kind(&["exec", "--", "env"]).is_err(), "needs a --secret");
        assert!(
            kind(&["exec", "--secret", "p=X"]).is_err(),
            "needs a command"
        );
        assert_eq!(
            kind(&["exec", "--secret", "p=1X", "env"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind(&["exec", "--secret", "p", "env"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        let text = exec_args(&["exec", "--secret", "p=A-B", "env"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("not a valid environment variable name"),
            "{text}"
        );
    }

    fn render_args(args: &[&str]) -> Result<RenderArgs, clap::error::ErrorKind> {
        let base = ["render", "--template", "t.tmpl", "--out", "app.conf"];
        let all: Vec<&str> = base.iter().chain(args).copied().collect();
        match parse(&all).map_err(|e| e.kind())?.command {
            Command::Render(render) => Ok(render),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn render_defaults() {
        let render = render_args(&[]).expect("parses");
        assert_eq!(render.template, PathBuf::from("t.tmpl"));
        assert_eq!(render.out, PathBuf::from("app.conf"));
        assert!(!render.watch && !render.once);
        assert_eq!(render.interval, Duration::from_secs(5));
        assert_eq!(
            (render.signal, render.pid, render.pid_file),
            (None, None, None)
        );
        assert!(render_args(&["--once"]).is_ok());
        assert!(
            parse(&["render", "--out", "x"]).is_err(),
            "needs a template"
        );
        assert!(
            parse(&["render", "--template", "x"]).is_err(),
            "needs an output"
        );
    }

    #[test]
    fn render_watch_and_signal() {
        let render = render_args(&[
            "--watch",
            "--interval",
            "1m 30s",
            "--signal",
            "HUP",
            "--pid",
            "42",
        ])
        .expect("parses");
        assert!(render.watch);
        assert_eq!(render.interval, Duration::from_secs(90));
        assert_eq!(render.signal, Some(Signal::SIGHUP));
        assert_eq!(render.pid, Some(42));
        let render =
            render_args(&["--signal", "usr1", "--pid-file", "/run/app.pid"]).expect("parses");
        assert_eq!(render.signal, Some(Signal::SIGUSR1));
        assert_eq!(render.pid_file, Some(PathBuf::from("/run/app.pid")));
    }

    #[test]
    fn render_refuses_inconsistent_flags() {
        use clap::error::ErrorKind;
        for (args, want) in [
            (&["--watch", "--once"][..], ErrorKind::ArgumentConflict),
            (
                &["--interval", "5s"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (
                &["--watch", "--interval", "0s"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["--watch", "--interval", "soon"][..],
                ErrorKind::ValueValidation,
            ),
            (&["--signal", "HUP"][..], ErrorKind::MissingRequiredArgument),
            (&["--pid", "42"][..], ErrorKind::MissingRequiredArgument),
            (&["--pid-file", "p"][..], ErrorKind::MissingRequiredArgument),
            (
                &["--signal", "HUP", "--pid", "0"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["--signal", "HUP", "--pid", "-1"][..],
                ErrorKind::UnknownArgument,
            ),
            (
                &["--signal", "NOPE", "--pid", "1"][..],
                ErrorKind::ValueValidation,
            ),
            (
                &["--signal", "HUP", "--pid", "1", "--pid-file", "p"][..],
                ErrorKind::ArgumentConflict,
            ),
        ] {
            assert_eq!(render_args(args).map(|_| ()), Err(want), "{args:?}");
        }
    }

    #[test]
    fn help_documents_env_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for text in [
            "SPIKE_NEXUS_API_URL",
            "SPIKE_TRUST_ROOT_NEXUS",
            "SPIFFE_ENDPOINT_SOCKET",
            "Exit codes",
            "3  `spike status`",
        ] {
            assert!(help.contains(text), "{text} missing from:\n{help}");
        }
    }
}
