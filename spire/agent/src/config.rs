//! `spire-agent run` configuration: a TOML file (keys under `[agent]`), overridden by flags and
//! their environment variables, validated once into [`AgentConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spiffe::TrustDomain;

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
    metrics_address: Option<SocketAddr>,
    log_level: Option<String>,
    #[serde(default)]
    node_attestor: FileNodeAttestors,
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
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    pub log_level: String,
    /// x509pop node attestation, when configured (preferred over a join token).
    pub x509pop: Option<X509PopFiles>,
}

impl AgentConfig {
    /// Merges the config file (if any) with the flags and validates the result.
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileAgent::default(),
        };
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
            metrics_address: args.metrics_address.or(file.metrics_address),
            log_level: args
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or("info".into()),
        })
    }
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
