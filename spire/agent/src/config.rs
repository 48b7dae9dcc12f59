//! `spire-agent run` configuration: a TOML file (keys under `[agent]`), overridden by flags and
//! their environment variables, validated once into [`AgentConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common_net::{Limits, LimitsFile};
use serde::Deserialize;
use spiffe::TrustDomain;

use crate::workload::limits::WorkloadLimits;

/// Default Workload API socket, as SPIRE's.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";

/// Flags of `spire-agent run`. Each overrides the same key of the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Path to a TOML configuration file (keys under `[agent]`).
    #[arg(long = "config", env = "SPIRE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Trust domain of the server, e.g. `example.org`.
    #[arg(long = "trustDomain", env = "SPIRE_AGENT_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Address of the server's agent API.
    #[arg(long = "serverAddress", env = "SPIRE_AGENT_SERVER_ADDRESS")]
    pub server_address: Option<String>,
    /// Port of the server's agent API.
    #[arg(long = "serverPort", env = "SPIRE_AGENT_SERVER_PORT")]
    pub server_port: Option<u16>,
    /// Single-use join token from `spire-server token generate` (only needed for the first start).
    #[arg(long = "joinToken", env = "SPIRE_AGENT_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// Bundle (PEM or SPIFFE JSON, as `spire-server bundle show` prints it) used to trust the
    /// server on first contact.
    #[arg(long = "trustBundle", env = "SPIRE_AGENT_TRUST_BUNDLE")]
    pub trust_bundle: Option<PathBuf>,
    /// Path of the Workload API socket.
    #[arg(long = "socketPath", env = "SPIRE_AGENT_SOCKET")]
    pub socket_path: Option<PathBuf>,
    /// Directory where the agent keeps its own SVID between restarts.
    #[arg(long = "dataDir", env = "SPIRE_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How often to sync entries with the server, e.g. `5s`.
    #[arg(long = "syncInterval", env = "SPIRE_AGENT_SYNC_INTERVAL")]
    pub sync_interval: Option<String>,
    /// Serve Prometheus metrics (plain HTTP, `GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9989`. Off unless set.
    #[arg(long = "metricsAddress", env = "SPIRE_AGENT_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Workload API calls (unary calls and stream opens) each calling process may make per
    /// second, sustained; 0 turns the limit off. Default 100.
    #[arg(long = "workloadRateLimit", env = "SPIRE_AGENT_WORKLOAD_RATE_LIMIT")]
    pub workload_rate_limit: Option<u32>,
    /// Workload API calls a process may make at once after being idle. Default: twice the
    /// rate limit (200).
    #[arg(long = "workloadRateBurst", env = "SPIRE_AGENT_WORKLOAD_RATE_BURST")]
    pub workload_rate_burst: Option<u32>,
    /// Workload API streams each calling process may have open at once; 0 turns the limit
    /// off. Default 32.
    #[arg(long = "workloadMaxStreams", env = "SPIRE_AGENT_WORKLOAD_MAX_STREAMS")]
    pub workload_max_streams: Option<u32>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long = "logLevel", env = "SPIRE_AGENT_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    agent: FileAgent,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    trust_domain: Option<String>,
    server_address: Option<String>,
    server_port: Option<u16>,
    join_token: Option<String>,
    trust_bundle_path: Option<PathBuf>,
    socket_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    sync_interval: Option<String>,
    workload_size_limit: Option<u64>,
    workload_rate_limit: Option<u32>,
    workload_rate_burst: Option<u32>,
    workload_max_streams: Option<u32>,
    metrics_address: Option<SocketAddr>,
    log_level: Option<String>,
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
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub trust_domain: TrustDomain,
    pub server_addr: SocketAddr,
    pub join_token: Option<String>,
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
    /// x509pop node attestation, when configured (preferred over a join token).
    pub x509pop: Option<X509PopFiles>,
    /// The bounds of the Workload API socket and the metrics endpoint.
    pub limits: AgentLimits,
}

impl AgentConfig {
    /// Merges the config file (if any) with the flags and validates the result.
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileAgent::default(),
        };
        let workload_limits = workload_limits(args, &file)?;
        let td = args
            .trust_domain
            .clone()
            .or(file.trust_domain)
            .ok_or(ConfigError::Invalid {
                key: "trust_domain",
                message: "required (flag -trustDomain or `trust_domain` in [agent])".into(),
            })?;
        let trust_domain = TrustDomain::new(&td)
            .ok()
            .filter(|parsed| parsed.to_string() == td)
            .ok_or_else(|| ConfigError::Invalid {
                key: "trust_domain",
                message: format!("{td:?}: not a valid lowercase trust domain name"),
            })?;
        let host = args
            .server_address
            .clone()
            .or(file.server_address)
            .unwrap_or("127.0.0.1".into());
        let port = args.server_port.or(file.server_port).unwrap_or(8081);
        let server_addr = resolve(&host, port)?;
        let interval = args
            .sync_interval
            .clone()
            .or(file.sync_interval)
            .unwrap_or("5s".into());
        let sync_interval =
            humantime::parse_duration(&interval).map_err(|e| ConfigError::Invalid {
                key: "sync_interval",
                message: format!("{interval:?}: {e}"),
            })?;
        if sync_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "sync_interval",
                message: "must be at least 100ms".into(),
            });
        }
        Ok(AgentConfig {
            limits: file.limits.resolve()?,
            x509pop: file.node_attestor.x509pop,
            trust_domain,
            server_addr,
            join_token: args.join_token.clone().or(file.join_token),
            trust_bundle: args.trust_bundle.clone().or(file.trust_bundle_path),
            socket_path: args
                .socket_path
                .clone()
                .or(file.socket_path)
                .unwrap_or(DEFAULT_SOCKET_PATH.into()),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or("./.data/agent".into()),
            sync_interval,
            workload_size_limit: file.workload_size_limit.unwrap_or(0),
            workload_limits,
            metrics_address: args.metrics_address.or(file.metrics_address),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or("info".into()),
        })
    }
}

/// The Workload API limits: flags over file over [`WorkloadLimits::DEFAULT`]; an unset burst
/// is twice the rate.
fn workload_limits(args: &RunArgs, file: &FileAgent) -> Result<WorkloadLimits, ConfigError> {
    let default = WorkloadLimits::DEFAULT;
    let rate_per_second = args
        .workload_rate_limit
        .or(file.workload_rate_limit)
        .unwrap_or(default.rate_per_second);
    let burst = match args.workload_rate_burst.or(file.workload_rate_burst) {
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
        max_streams: args
            .workload_max_streams
            .or(file.workload_max_streams)
            .unwrap_or(default.max_streams),
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

fn read_file(path: &Path) -> Result<FileAgent, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(parsed.agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            trust_domain: Some("example.org".into()),
            ..RunArgs::default()
        }
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
        let config = AgentConfig::load(&RunArgs {
            config: Some(example.into()),
            ..RunArgs::default()
        })
        .expect("examples/config/agent.toml loads");
        assert_eq!(config.trust_domain.to_string(), "example.org");
        assert_eq!(config.workload_limits, WorkloadLimits::DEFAULT);
    }

    #[test]
    fn workload_limits_default_to_100_per_second_bursts_of_200_and_32_streams() {
        let config = AgentConfig::load(&args()).expect("config");
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
            "[agent]\nworkload_rate_limit = 5\nworkload_rate_burst = 7\nworkload_max_streams = 0\n",
        );
        let from_file = AgentConfig::load(&RunArgs {
            config: Some(file.clone()),
            ..args()
        })
        .expect("config");
        assert_eq!(
            from_file.workload_limits,
            WorkloadLimits {
                rate_per_second: 5,
                burst: 7,
                max_streams: 0
            }
        );
        let flags = AgentConfig::load(&RunArgs {
            config: Some(file),
            workload_rate_limit: Some(50),
            workload_max_streams: Some(4),
            ..args()
        })
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
            "[agent]\n[agent.limits.workload_api]\nmax_connections_per_process = 4\nheader_timeout = \"2s\"\n",
        );
        let config = AgentConfig::load(&RunArgs {
            config: Some(file),
            ..args()
        })
        .expect("config");
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
            "[agent]\n[agent.limits.workload_api]\nmax_connections = 0\n",
        );
        let err = AgentConfig::load(&RunArgs {
            config: Some(file),
            ..args()
        })
        .expect_err("zero connections")
        .to_string();
        assert!(
            err.contains("limits.workload_api") && err.contains("max_connections"),
            "{err}"
        );
    }

    #[test]
    fn an_unset_burst_is_twice_the_rate_and_zero_turns_the_rate_off() {
        let config = AgentConfig::load(&RunArgs {
            workload_rate_limit: Some(1000),
            ..args()
        })
        .expect("config");
        assert_eq!(config.workload_limits.burst, 2000);
        let off = AgentConfig::load(&RunArgs {
            workload_rate_limit: Some(0),
            workload_rate_burst: Some(0),
            ..args()
        })
        .expect("a zero burst is fine while the rate is off");
        assert_eq!(off.workload_limits.rate_per_second, 0);
        let err = AgentConfig::load(&RunArgs {
            workload_rate_burst: Some(0),
            ..args()
        })
        .expect_err("a zero burst with the rate on");
        assert!(err.to_string().contains("workload_rate_burst"), "{err}");
    }

    #[test]
    fn the_flags_parse_in_spire_style() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(spire_proto::flags::normalize(
            [
                "spire-agent",
                "run",
                "-workloadRateLimit",
                "10",
                "-workloadRateBurst",
                "20",
                "-workloadMaxStreams",
                "2",
            ]
            .map(String::from),
        ));
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("run");
        };
        assert_eq!(run.workload_rate_limit, Some(10));
        assert_eq!(run.workload_rate_burst, Some(20));
        assert_eq!(run.workload_max_streams, Some(2));
    }
}
