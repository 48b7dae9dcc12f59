//! `spire-agent run` configuration, by the one mechanism every binary uses
//! ([`common_process::config_file`], sectioned layout): [`RunArgs`] declares each option once
//! (flag, environment variable, default, parser); a TOML file sets the same options under
//! `[agent]` by their ids and the nested tables (`[agent.node_attestor.*]`,
//! `[agent.limits.*]`) in [`AgentSections`]. Precedence: flag, environment, file, default.
//! [`AgentConfig::load`] checks what spans options, once, at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common_net::{Limits, LimitsFile};
use common_process::config_file::{ConfigFileError, Layout};
use serde::Deserialize;
use spiffe::TrustDomain;

use crate::workload::limits::WorkloadLimits;

/// Default Workload API socket, as SPIRE's.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";

/// Where the agent's options are: those of `spire-agent run`, under `[agent]` in the file.
pub const LAYOUT: Layout = Layout::sectioned("run", "agent");

/// Options of `spire-agent run`. The file key of each is its field name under `[agent]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Path to a TOML configuration file: the options below under `[agent]` by their field
    /// names in snake case (`trust_domain`, `trust_bundle_path`, ...), and the tables
    /// `[agent.node_attestor.x509pop]` and `[agent.limits.*]`.
    #[arg(long = "config", env = "SPIRE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Trust domain of the server, e.g. `example.org`.
    #[arg(long = "trustDomain", env = "SPIRE_AGENT_TRUST_DOMAIN", required = true, value_parser = trust_domain)]
    pub trust_domain: TrustDomain,
    /// Address of the server's agent API.
    #[arg(
        long = "serverAddress",
        env = "SPIRE_AGENT_SERVER_ADDRESS",
        default_value = "127.0.0.1"
    )]
    pub server_address: String,
    /// Port of the server's agent API.
    #[arg(
        long = "serverPort",
        env = "SPIRE_AGENT_SERVER_PORT",
        default_value_t = 8081
    )]
    pub server_port: u16,
    /// Single-use join token from `spire-server token generate` (only needed for the first start).
    #[arg(long = "joinToken", env = "SPIRE_AGENT_JOIN_TOKEN")]
    pub join_token: Option<JoinToken>,
    /// Bundle (PEM or SPIFFE JSON, as `spire-server bundle show` prints it) used to trust the
    /// server on first contact (file: `trust_bundle_path`).
    #[arg(long = "trustBundle", env = "SPIRE_AGENT_TRUST_BUNDLE")]
    pub trust_bundle_path: Option<PathBuf>,
    /// Path of the Workload API socket.
    #[arg(long = "socketPath", env = "SPIRE_AGENT_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Directory where the agent keeps its own SVID between restarts.
    #[arg(
        long = "dataDir",
        env = "SPIRE_AGENT_DATA_DIR",
        default_value = "./.data/agent"
    )]
    pub data_dir: PathBuf,
    /// How often to sync entries with the server, e.g. `5s` (at least 100ms).
    #[arg(long = "syncInterval", env = "SPIRE_AGENT_SYNC_INTERVAL", default_value = "5s", value_parser = sync_interval)]
    pub sync_interval: Duration,
    /// Executables larger than this many bytes get no `unix:sha256` selector (hashing them
    /// would slow every call); 0 means no limit, as SPIRE's default.
    #[arg(long = "workloadSizeLimit", default_value_t = 0)]
    pub workload_size_limit: u64,
    /// Serve Prometheus metrics (plain HTTP, `GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9989`. Off unless set.
    #[arg(long = "metricsAddress", env = "SPIRE_AGENT_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Workload API calls (unary calls and stream opens) each calling process may make per
    /// second, sustained; 0 turns the limit off.
    #[arg(long = "workloadRateLimit", env = "SPIRE_AGENT_WORKLOAD_RATE_LIMIT", default_value_t = WorkloadLimits::DEFAULT.rate_per_second)]
    pub workload_rate_limit: u32,
    /// Workload API calls a process may make at once after being idle. Default: twice the
    /// rate limit (200).
    #[arg(long = "workloadRateBurst", env = "SPIRE_AGENT_WORKLOAD_RATE_BURST")]
    pub workload_rate_burst: Option<u32>,
    /// Workload API streams each calling process may have open at once; 0 turns the limit
    /// off.
    #[arg(long = "workloadMaxStreams", env = "SPIRE_AGENT_WORKLOAD_MAX_STREAMS", default_value_t = WorkloadLimits::DEFAULT.max_streams)]
    pub workload_max_streams: u32,
    /// On SIGTERM or SIGINT, how long Workload API calls in flight get to finish (streams,
    /// such as FetchX509SVID, end at once so that their clients reconnect), e.g. `10s`.
    #[arg(long = "drainTimeout", env = "SPIRE_AGENT_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Log level: error, warn, info, debug, trace.
    #[arg(
        long = "logLevel",
        env = "SPIRE_AGENT_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

/// The nested tables of `[agent]`, typed (the scalar keys are [`RunArgs`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSections {
    #[serde(default)]
    node_attestor: FileNodeAttestors,
    #[serde(default)]
    limits: FileLimits,
}

/// `[agent.limits.*]`: keys of [`common_net::Limits`] over each listener's preset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    workload_api: Option<LimitsFile>,
    metrics: Option<LimitsFile>,
}

/// The bounds of the agent's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLimits {
    /// The Workload API socket: connections per UID and PID, the time to the first request,
    /// idle connections ([`Limits::WORKLOAD_API`] unless configured).
    pub workload_api: Limits,
    /// The metrics endpoint ([`Limits::METRICS`] unless configured).
    pub metrics: Limits,
}

impl FileLimits {
    fn resolve(&self) -> Result<AgentLimits, ConfigError> {
        let over = |key: &'static str, table: &Option<LimitsFile>, preset: Limits| {
            LimitsFile::resolve(table.as_ref(), preset).map_err(|e| ConfigError::Invalid {
                key,
                message: e.to_string(),
            })
        };
        Ok(AgentLimits {
            workload_api: over(
                "limits.workload_api",
                &self.workload_api,
                Limits::WORKLOAD_API,
            )?,
            metrics: over("limits.metrics", &self.metrics, Limits::METRICS)?,
        })
    }
}

/// `[agent.node_attestor.*]`: attest with something other than a join token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNodeAttestors {
    x509pop: Option<X509PopFiles>,
}

/// `[agent.node_attestor.x509pop]`: the node's certificate and key, as SPIRE's plugin takes
/// them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509PopFiles {
    /// PEM: the node certificate, optionally followed by intermediates.
    pub certificate_path: PathBuf,
    /// PEM PKCS#8 private key of the certificate (ECDSA P-256 or RSA).
    pub private_key_path: PathBuf,
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line, the environment or the file (which names itself and the key).
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// A value (or a combination) that cannot work.
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A join token: a credential until the server has used it, so it prints as `[REDACTED]`
/// (the configuration derives `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(String);

impl JoinToken {
    /// The token itself, for the attestation request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken([REDACTED])")
    }
}

impl std::str::FromStr for JoinToken {
    type Err = &'static str;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        if token.is_empty() {
            return Err("the join token is empty");
        }
        Ok(JoinToken(token.to_owned()))
    }
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub trust_domain: TrustDomain,
    pub server_addr: SocketAddr,
    pub join_token: Option<JoinToken>,
    pub trust_bundle: Option<PathBuf>,
    pub socket_path: PathBuf,
    pub data_dir: PathBuf,
    pub sync_interval: Duration,
    pub workload_size_limit: u64,
    /// Per-caller limits on the Workload API.
    pub workload_limits: WorkloadLimits,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    pub log_level: String,
    /// How long Workload API calls in flight at shutdown get to finish.
    pub drain_timeout: Duration,
    /// x509pop node attestation, when configured (preferred over a join token).
    pub x509pop: Option<X509PopFiles>,
    /// The bounds of the Workload API socket and the metrics endpoint.
    pub limits: AgentLimits,
}

impl AgentConfig {
    /// Parses `spire-agent run ARGS` (after the program name) as `main` does, the file
    /// included, and validates the result.
    pub fn from_run_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ConfigError> {
        let argv = ["spire-agent".to_owned(), "run".to_owned()]
            .into_iter()
            .chain(args);
        let (cli, sections): (crate::cli::Cli, AgentSections) =
            common_process::config_file::try_parse_sectioned_from(
                &LAYOUT,
                spire_proto::flags::normalize(argv),
            )?;
        match cli.command {
            crate::cli::Command::Run(args) => AgentConfig::load(args, sections),
            _ => unreachable!("the arguments start with `run`"),
        }
    }

    /// Checks what spans options, and the nested tables, and resolves the server's address.
    pub fn load(args: RunArgs, file: AgentSections) -> Result<Self, ConfigError> {
        let workload_limits = workload_limits(&args)?;
        let server_addr = resolve(&args.server_address, args.server_port)?;
        Ok(AgentConfig {
            // The tables come only from the file: their faults name it.
            limits: file.limits.resolve().map_err(|e| match (e, &args.config) {
                (ConfigError::Invalid { key, message }, Some(path)) => {
                    ConfigError::File(ConfigFileError::Invalid {
                        path: path.clone(),
                        key: format!("agent.{key}"),
                        message,
                    })
                }
                (e, _) => e,
            })?,
            x509pop: file.node_attestor.x509pop,
            trust_domain: args.trust_domain,
            server_addr,
            join_token: args.join_token,
            trust_bundle: args.trust_bundle_path,
            socket_path: args.socket_path,
            data_dir: args.data_dir,
            sync_interval: args.sync_interval,
            workload_size_limit: args.workload_size_limit,
            workload_limits,
            metrics_address: args.metrics_address,
            log_level: args.log_level,
            drain_timeout: args.drain_timeout,
        })
    }
}

/// The `-trustDomain` option's parser: a valid trust domain name, lowercase.
fn trust_domain(td: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(td)
        .ok()
        .filter(|parsed| parsed.to_string() == td)
        .ok_or_else(|| format!("{td:?}: not a valid lowercase trust domain name"))
}

/// The `-syncInterval` option's parser: a duration of at least 100ms.
fn sync_interval(value: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(value).map_err(|e| format!("{value:?}: {e}"))?;
    if parsed < Duration::from_millis(100) {
        return Err("must be at least 100ms".into());
    }
    Ok(parsed)
}

/// The Workload API limits; an unset burst is twice the rate.
fn workload_limits(args: &RunArgs) -> Result<WorkloadLimits, ConfigError> {
    let rate_per_second = args.workload_rate_limit;
    let burst = match args.workload_rate_burst {
        Some(0) if rate_per_second > 0 => {
            return Err(ConfigError::Invalid {
                key: "workload_rate_burst",
                message: "must be at least 1 while workload_rate_limit is on".into(),
            });
        }
        Some(burst) => burst,
        None => rate_per_second.saturating_mul(2),
    };
    Ok(WorkloadLimits {
        rate_per_second,
        burst,
        max_streams: args.workload_max_streams,
    })
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError::Invalid {
            key: "server_address",
            message: format!("{host:?}: {e}"),
        })?
        .next()
        .ok_or(ConfigError::Invalid {
            key: "server_address",
            message: format!("{host:?} resolves to nothing"),
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `spire-agent run -trustDomain example.org ARGS`, validated.
    fn load(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        AgentConfig::from_run_args(
            ["-trustDomain", "example.org"]
                .iter()
                .chain(args)
                .map(|a| a.to_string()),
        )
    }

    /// `spire-agent run -config FILE ARGS`, validated.
    fn load_file(file: &Path, args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let path = file.to_str().expect("utf-8 path");
        AgentConfig::from_run_args(["-config", path].iter().chain(args).map(|a| a.to_string()))
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).expect("writing the config");
        path
    }

    #[test]
    fn the_example_config_is_valid() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/config/agent.toml"
        );
        let config = load_file(Path::new(example), &[]).expect("examples/config/agent.toml loads");
        assert_eq!(config.trust_domain.to_string(), "example.org");
        assert_eq!(config.workload_limits, WorkloadLimits::DEFAULT);
        assert_eq!(config.trust_bundle, Some("/tmp/bundle.pem".into()));
        assert_eq!(config.sync_interval, Duration::from_secs(5));
        assert_eq!(config.drain_timeout, common_net::DRAIN_TIMEOUT);
    }

    #[test]
    fn bad_keys_and_values_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, expected) in [
            (
                "[agent]\ntrust_bundle = \"/b.pem\"\n",
                "unknown key `agent.trust_bundle`",
            ),
            (
                "[agent]\nsync_interval = \"1ms\"\n",
                "key `agent.sync_interval`",
            ),
            (
                "[agent]\ntrust_domain = \"Upper.org\"\n",
                "key `agent.trust_domain`",
            ),
            (
                "[agent]\ndrain_timeout = \"x\"\n",
                "key `agent.drain_timeout`",
            ),
            (
                "[agent.node_attestor.x509pop]\ncertificate_path = \"/c\"\n",
                "key `agent.node_attestor.x509pop`: missing field `private_key_path`",
            ),
            (
                "[agent.limits.workload]\n",
                "key `agent.limits.workload`: unknown field",
            ),
        ] {
            let file = write(dir.path(), text);
            let err = load_file(&file, &["-trustDomain", "example.org"])
                .expect_err(text)
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains(file.to_str().expect("utf-8")), "{err}");
        }
        let err = load(&["-syncInterval", "1ms"])
            .expect_err("too short")
            .to_string();
        assert!(
            err.contains("--syncInterval") && err.contains("100ms"),
            "{err}"
        );
    }

    #[test]
    fn workload_limits_default_to_100_per_second_bursts_of_200_and_32_streams() {
        let config = load(&[]).expect("config");
        assert_eq!(
            config.workload_limits,
            WorkloadLimits {
                rate_per_second: 100,
                burst: 200,
                max_streams: 32
            }
        );
    }

    #[test]
    fn workload_limits_come_from_the_file_and_flags_override_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "[agent]\ntrust_domain = \"example.org\"\nworkload_rate_limit = 5\nworkload_rate_burst = 7\nworkload_max_streams = 0\n",
        );
        let from_file = load_file(&file, &[]).expect("config");
        assert_eq!(
            from_file.workload_limits,
            WorkloadLimits {
                rate_per_second: 5,
                burst: 7,
                max_streams: 0
            }
        );
        let flags = load_file(
            &file,
            &["-workloadRateLimit", "50", "-workloadMaxStreams", "4"],
        )
        .expect("config");
        assert_eq!(
            flags.workload_limits,
            WorkloadLimits {
                rate_per_second: 50,
                burst: 7,
                max_streams: 4
            }
        );
    }

    #[test]
    fn socket_limits_come_from_their_table_over_the_preset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "[agent]\ntrust_domain = \"example.org\"\n[agent.limits.workload_api]\nmax_connections_per_process = 4\nheader_timeout = \"2s\"\n",
        );
        let config = load_file(&file, &[]).expect("config");
        assert_eq!(config.limits.workload_api.max_connections_per_process, 4);
        assert_eq!(
            config.limits.workload_api.header_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            config.limits.workload_api.max_connections,
            Limits::WORKLOAD_API.max_connections
        );
        assert_eq!(config.limits.metrics, Limits::METRICS);
        let file = write(
            dir.path(),
            "[agent]\ntrust_domain = \"example.org\"\n[agent.limits.workload_api]\nmax_connections = 0\n",
        );
        let err = load_file(&file, &[])
            .expect_err("zero connections")
            .to_string();
        assert!(
            err.starts_with("config file ")
                && err.contains("key `agent.limits.workload_api`")
                && err.contains("max_connections"),
            "{err}"
        );
    }

    #[test]
    fn an_unset_burst_is_twice_the_rate_and_zero_turns_the_rate_off() {
        let config = load(&["-workloadRateLimit", "1000"]).expect("config");
        assert_eq!(config.workload_limits.burst, 2000);
        let off = load(&["-workloadRateLimit", "0", "-workloadRateBurst", "0"])
            .expect("a zero burst is fine while the rate is off");
        assert_eq!(off.workload_limits.rate_per_second, 0);
        let err = load(&["-workloadRateBurst", "0"]).expect_err("a zero burst with the rate on");
        assert!(err.to_string().contains("workload_rate_burst"), "{err}");
    }

    #[test]
    fn the_flags_parse_in_spire_style() {
        let config = load(&[
            "-workloadRateLimit",
            "10",
            "-workloadRateBurst",
            "20",
            "-workloadMaxStreams",
            "2",
            "-drainTimeout",
            "60s",
            "-trustBundle",
            "/b.pem",
        ])
        .expect("config");
        assert_eq!(
            config.workload_limits,
            WorkloadLimits {
                rate_per_second: 10,
                burst: 20,
                max_streams: 2
            }
        );
        assert_eq!(config.drain_timeout, Duration::from_secs(60));
        assert_eq!(config.trust_bundle, Some("/b.pem".into()));
    }

    #[test]
    fn the_join_token_is_used_but_never_printed() {
        let token = "6a1f0c7e-secret-token";
        let config = load(&["-joinToken", token]).expect("config");
        assert_eq!(
            config.join_token.as_ref().map(JoinToken::expose),
            Some(token)
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains(token), "{printed}");
        assert!(printed.contains("JoinToken([REDACTED])"), "{printed}");
        assert!(load(&["-joinToken", ""]).is_err());
    }
}
