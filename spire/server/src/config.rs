//! `spire-server run` configuration, by the one mechanism every binary uses
//! ([`common_process::config_file`], sectioned layout): [`RunArgs`] declares each option once
//! (flag, environment variable, default, parser); a TOML file sets the same options under
//! `[server]` by their ids (`trust_domain`, `bind_port`, ...) and the nested tables
//! (`[server.federation]`, `[server.key_manager.*]`, ...) in [`ServerSections`]. Precedence:
//! flag, environment, file, default. [`ServerConfig::load`] then checks what spans options
//! (TTL order, the key manager's choice, federation) once, at start.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use common_process::config_file::{ConfigFileError, Layout};
use serde::Deserialize;
use spiffe::TrustDomain;

use crate::ca::KeyManagerConfig;
use crate::ca::keys::{PinSource, Pkcs11Config};
use crate::ca::upstream::DiskUpstreamConfig;

/// Where the server's options are: those of `spire-server run`, under `[server]` in the file.
pub const LAYOUT: Layout = Layout::sectioned("run", "server");

/// Options of `spire-server run`. The file key of each is its field name under `[server]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Path to a TOML configuration file: the options below under `[server]` by their field
    /// names in snake case (`trust_domain`, `bind_port`, ...), and the tables
    /// `[server.federation]`, `[server.node_attestor.*]`, `[server.key_manager.*]`,
    /// `[server.upstream_authority.disk]`, `[server.oidc_discovery]`, `[server.limits.*]`.
    #[arg(long = "config", env = "SPIRE_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Trust domain this server issues identities for, e.g. `example.org` (file:
    /// `trust_domain`).
    #[arg(long = "trustDomain", env = "SPIRE_SERVER_TRUST_DOMAIN", required = true, value_parser = trust_domain_arg)]
    pub trust_domain: TrustDomain,
    /// IP address the agent API listens on.
    #[arg(
        long = "bindAddress",
        env = "SPIRE_SERVER_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub bind_address: IpAddr,
    /// TCP port the agent API listens on (0 picks a free port; file: `bind_port`).
    #[arg(long = "serverPort", env = "SPIRE_SERVER_PORT", default_value_t = 8081)]
    pub bind_port: u16,
    /// Directory for the CA key and the default SQLite datastore.
    #[arg(
        long = "dataDir",
        env = "SPIRE_SERVER_DATA_DIR",
        default_value = "./.data"
    )]
    pub data_dir: PathBuf,
    /// Datastore URL: `sqlite://<file>` or `postgres://user@host/db`. Default: SQLite in dataDir.
    #[arg(long = "dataStore", env = "SPIRE_SERVER_DATASTORE")]
    pub datastore: Option<String>,
    /// Admin API socket used by the CLI.
    #[arg(long = "socketPath", env = "SPIRE_SERVER_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Default X509-SVID lifetime, e.g. `1h`, `90s`.
    #[arg(long = "defaultX509SVIDTTL", default_value = "1h", value_parser = ttl)]
    pub default_x509_svid_ttl: Duration,
    /// Default JWT-SVID lifetime.
    #[arg(long = "defaultJWTSVIDTTL", default_value = "5m", value_parser = ttl)]
    pub default_jwt_svid_ttl: Duration,
    /// Lifetime of agent SVIDs. Default: defaultX509SVIDTTL.
    #[arg(long = "agentTTL", value_parser = ttl)]
    pub agent_ttl: Option<Duration>,
    /// Lifetime of the CA certificate.
    #[arg(long = "caTTL", default_value = "24h", value_parser = ttl)]
    pub ca_ttl: Duration,
    /// The `iss` claim of JWT-SVIDs (SPIRE's `jwt_issuer`), an https:// (or http://) URL;
    /// none when unset.
    #[arg(long = "jwtIssuer", env = "SPIRE_SERVER_JWT_ISSUER", value_parser = issuer)]
    pub jwt_issuer: Option<String>,
    /// Serve Prometheus metrics (plain HTTP, `GET /metrics`) on this address, e.g.
    /// `127.0.0.1:9988`. Off unless set.
    #[arg(long = "metricsAddress", env = "SPIRE_SERVER_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, how long requests in flight on each listener get to finish
    /// (new connections are refused at once), e.g. `10s`.
    #[arg(long = "drainTimeout", env = "SPIRE_SERVER_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Log level: error, warn, info, debug, trace.
    #[arg(
        long = "logLevel",
        env = "SPIRE_SERVER_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

/// The nested tables of `[server]`, typed (the scalar keys are [`RunArgs`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSections {
    #[serde(default)]
    federation: FileFederation,
    #[serde(default)]
    node_attestor: FileNodeAttestors,
    #[serde(default)]
    key_manager: FileKeyManager,
    #[serde(default)]
    upstream_authority: FileUpstreamAuthority,
    oidc_discovery: Option<FileOidc>,
    #[serde(default)]
    limits: crate::limits::FileLimits,
}

/// `[server.oidc_discovery]`: SPIRE's oidc-discovery-provider, built in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    address: Option<IpAddr>,
    port: Option<u16>,
    /// Host names the provider answers for (the request's `Host`).
    domains: Vec<String>,
    /// Plain HTTP, for a TLS-terminating proxy in front.
    #[serde(default)]
    allow_insecure_scheme: bool,
    serving_cert_file: Option<FileServingCert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServingCert {
    cert_file_path: PathBuf,
    key_file_path: PathBuf,
    /// How often the files are checked for a renewal (SPIRE's `file_sync_interval`).
    file_sync_interval: Option<String>,
}

/// `[server.upstream_authority.disk]`: an existing CA that signs the server's CA (SPIRE's
/// `disk` UpstreamAuthority, same keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstreamAuthority {
    disk: Option<FileDiskUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDiskUpstream {
    cert_file_path: PathBuf,
    key_file_path: PathBuf,
    bundle_file_path: Option<PathBuf>,
}

/// `[server.key_manager.*]`: where the CA and JWT private keys live (SPIRE's KeyManager
/// plugin). `disk` (the default) keeps them in the data directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeyManager {
    disk: Option<FileDiskKeys>,
    pkcs11: Option<FilePkcs11>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDiskKeys {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePkcs11 {
    module_path: PathBuf,
    token_label: String,
    /// The environment variable holding the user PIN (default `SPIRE_SERVER_PKCS11_PIN`).
    pin_env: Option<String>,
    /// A file whose first line is the user PIN (instead of `pin_env`).
    pin_file: Option<PathBuf>,
    key_label_prefix: Option<String>,
}

/// `[server.node_attestor.*]`: node attestors beyond join tokens (always on).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNodeAttestors {
    x509pop: Option<FileX509Pop>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileX509Pop {
    /// PEM CAs that agents' certificates must chain to.
    ca_bundle_path: PathBuf,
}

/// `[server.federation]`, SPIRE's `federation` block in TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFederation {
    bundle_endpoint: Option<FileBundleEndpoint>,
    #[serde(default)]
    federates_with: std::collections::BTreeMap<String, FileRelationship>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBundleEndpoint {
    address: Option<IpAddr>,
    port: Option<u16>,
    refresh_hint: Option<String>,
    /// `https_spiffe` (the default: the server's own SVID) or `https_web` (a Web PKI
    /// certificate from `serving_cert_file`), SPIFFE Federation §5.
    profile: Option<String>,
    serving_cert_file: Option<FileServingCert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRelationship {
    bundle_endpoint_url: String,
    bundle_endpoint_profile: String,
    endpoint_spiffe_id: Option<String>,
}

/// Where this server serves its bundle to other trust domains.
#[derive(Debug, Clone)]
pub struct BundleEndpoint {
    pub address: SocketAddr,
    /// `spiffe_refresh_hint` of the bundle served.
    pub refresh_hint: Duration,
    /// The `https_web` profile's certificate; `None` for `https_spiffe` (the server's SVID).
    pub web_cert: Option<ServingCertFiles>,
}

/// A Web PKI certificate and key (PEM files) an endpoint serves, re-read when they change
/// ([`crate::serving_cert`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCertFiles {
    pub cert_file_path: PathBuf,
    pub key_file_path: PathBuf,
    /// How often the files are checked for a renewal.
    pub file_sync_interval: Duration,
}

/// Checks a `serving_cert_file` block of `key`.
fn serving_cert(key: &'static str, file: FileServingCert) -> Result<ServingCertFiles, ConfigError> {
    Ok(ServingCertFiles {
        cert_file_path: file.cert_file_path,
        key_file_path: file.key_file_path,
        file_sync_interval: duration(key, file.file_sync_interval, Duration::from_secs(60))?,
    })
}

/// A trust domain whose bundle this server fetches from its bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRelationship {
    pub trust_domain: TrustDomain,
    /// `https://host:port[/path]`.
    pub url: String,
    /// How the endpoint is authenticated.
    pub profile: EndpointProfile,
}

/// The two bundle endpoint profiles of SPIFFE Federation §5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// The endpoint presents an X509-SVID with this SPIFFE ID, verified against the latest
    /// stored bundle of its trust domain.
    HttpsSpiffe {
        endpoint_spiffe_id: spiffe::SpiffeId,
    },
    /// The endpoint presents a Web PKI certificate for its host, verified against the
    /// system's roots.
    HttpsWeb,
}

impl EndpointProfile {
    /// `https_spiffe` or `https_web`.
    pub fn name(&self) -> &'static str {
        match self {
            EndpointProfile::HttpsSpiffe { .. } => "https_spiffe",
            EndpointProfile::HttpsWeb => "https_web",
        }
    }
}

impl FederationRelationship {
    /// Checks a relationship with `td` as an operator gives it (config file, or the admin
    /// API): a foreign trust domain, an https URL, a known profile and, for `https_spiffe`,
    /// an endpoint SPIFFE ID in that trust domain.
    pub fn parse(
        own: &TrustDomain,
        td: &str,
        url: &str,
        profile: &str,
        endpoint_spiffe_id: Option<&str>,
    ) -> Result<FederationRelationship, String> {
        let trust_domain = spire_proto::flags::canonical_trust_domain(td)?;
        if &trust_domain == own {
            return Err("is this server's own trust domain".into());
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("bundle endpoint URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err("the bundle endpoint URL must be an https:// URL".into());
        }
        if url.contains('@') {
            return Err("the bundle endpoint URL must not carry user information".into());
        }
        let profile = match (profile, endpoint_spiffe_id.filter(|s| !s.is_empty())) {
            ("https_web", _) => EndpointProfile::HttpsWeb,
            ("https_spiffe", None) => {
                return Err("the https_spiffe profile needs the endpoint's SPIFFE ID \
                            (endpoint_spiffe_id; -endpointSpiffeID on the command line)"
                    .into());
            }
            ("https_spiffe", Some(id)) => {
                let endpoint_spiffe_id = spire_proto::flags::canonical_spiffe_id(id)
                    .map_err(|e| format!("endpoint_spiffe_id {id:?}: {e}"))?;
                if endpoint_spiffe_id.trust_domain() != &trust_domain {
                    return Err(format!(
                        "endpoint_spiffe_id {id} is not in {trust_domain}; the endpoint must \
                         serve its own trust domain's bundle"
                    ));
                }
                EndpointProfile::HttpsSpiffe { endpoint_spiffe_id }
            }
            (other, _) => {
                return Err(format!(
                    "bundle_endpoint_profile {other:?} is not supported; use \"https_spiffe\" \
                     or \"https_web\""
                ));
            }
        };
        Ok(FederationRelationship {
            trust_domain,
            url: url.to_owned(),
            profile,
        })
    }
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

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub trust_domain: TrustDomain,
    pub bind_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub datastore_url: String,
    pub socket_path: PathBuf,
    pub default_x509_svid_ttl: Duration,
    pub default_jwt_svid_ttl: Duration,
    pub agent_ttl: Duration,
    pub ca_ttl: Duration,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    pub log_level: String,
    /// How long requests in flight at shutdown get to finish, on every listener.
    pub drain_timeout: Duration,
    /// This server's bundle endpoint, if it serves one.
    pub bundle_endpoint: Option<BundleEndpoint>,
    /// Trust domains whose bundles are fetched from their bundle endpoints.
    pub federates_with: Vec<FederationRelationship>,
    /// CAs for x509pop node attestation; x509pop is off when unset.
    pub x509pop_ca_bundle: Option<PathBuf>,
    /// Where the CA and JWT private keys live.
    pub key_manager: KeyManagerConfig,
    /// The CA that signs the server's CA, if it is not self-signed.
    pub upstream_authority: Option<DiskUpstreamConfig>,
    /// The `iss` claim of JWT-SVIDs.
    pub jwt_issuer: Option<String>,
    /// The OIDC discovery endpoint, if served.
    pub oidc_discovery: Option<OidcConfig>,
    /// The bounds of every listener (`[server.limits.*]`).
    pub limits: crate::limits::ServerLimits,
}

/// Where and how the OIDC discovery document and JWKS are served.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub address: SocketAddr,
    /// Host names (lowercase, without port) the provider answers for.
    pub domains: Vec<String>,
    /// The TLS certificate; plain HTTP when `None`.
    pub tls: Option<ServingCertFiles>,
}

/// The environment variable that holds the PKCS#11 user PIN unless `pin_env` names another.
pub const DEFAULT_PKCS11_PIN_ENV: &str = "SPIRE_SERVER_PKCS11_PIN";

/// Default admin socket, as SPIRE's.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";

impl ServerConfig {
    /// Parses `spire-server run ARGS` (after the program name) as `main` does, the file
    /// included, and validates the result.
    pub fn from_run_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, ConfigError> {
        let argv = ["spire-server".to_owned(), "run".to_owned()]
            .into_iter()
            .chain(args);
        let (cli, sections): (crate::cli::Cli, ServerSections) =
            common_process::config_file::try_parse_sectioned_from(
                &LAYOUT,
                spire_proto::flags::normalize(argv),
            )?;
        match cli.command {
            crate::cli::Command::Run(args) => ServerConfig::load(args, sections),
            _ => unreachable!("the arguments start with `run`"),
        }
    }

    /// Checks what spans options, and the nested tables, and resolves the defaults that
    /// depend on other values.
    pub fn load(args: RunArgs, file: ServerSections) -> Result<Self, ConfigError> {
        // The tables come only from the file: their faults name it, as the parser's do.
        let in_file = in_file(args.config.clone(), LAYOUT);
        let trust_domain = args.trust_domain;
        let data_dir = args.data_dir;
        let datastore_url = args.datastore.unwrap_or_else(|| {
            format!("sqlite://{}", data_dir.join("datastore.sqlite3").display())
        });
        let x509_ttl = args.default_x509_svid_ttl;
        let bundle_endpoint = file
            .federation
            .bundle_endpoint
            .map(|e| -> Result<BundleEndpoint, ConfigError> {
                let invalid = |message: &str| ConfigError::Invalid {
                    key: "federation.bundle_endpoint",
                    message: message.to_owned(),
                };
                let web_cert = match (e.profile.as_deref(), e.serving_cert_file) {
                    (None | Some("https_spiffe"), None) => None,
                    (None | Some("https_spiffe"), Some(_)) => {
                        return Err(invalid(
                            "serving_cert_file is for profile = \"https_web\"; the \
                             https_spiffe profile serves the server's own SVID",
                        ));
                    }
                    (Some("https_web"), Some(files)) => Some(serving_cert(
                        "federation.bundle_endpoint.serving_cert_file.file_sync_interval",
                        files,
                    )?),
                    (Some("https_web"), None) => {
                        return Err(invalid(
                            "profile = \"https_web\" needs serving_cert_file \
                             (cert_file_path, key_file_path)",
                        ));
                    }
                    (Some(other), _) => {
                        return Err(invalid(&format!(
                            "profile {other:?} is not supported; use \"https_spiffe\" or \
                             \"https_web\""
                        )));
                    }
                };
                Ok(BundleEndpoint {
                    web_cert,
                    address: SocketAddr::new(
                        e.address.unwrap_or([0, 0, 0, 0].into()),
                        e.port.unwrap_or(8443),
                    ),
                    refresh_hint: duration(
                        "federation.bundle_endpoint.refresh_hint",
                        e.refresh_hint,
                        Duration::from_secs(300),
                    )?,
                })
            })
            .transpose()
            .map_err(&in_file)?;
        let federates_with = file
            .federation
            .federates_with
            .into_iter()
            .map(|(td, rel)| relationship(&trust_domain, &td, rel))
            .collect::<Result<_, _>>()
            .map_err(&in_file)?;
        let key_manager = key_manager(file.key_manager, &trust_domain).map_err(&in_file)?;
        let oidc_discovery = file
            .oidc_discovery
            .map(oidc)
            .transpose()
            .map_err(&in_file)?;
        let config = ServerConfig {
            jwt_issuer: args.jwt_issuer,
            oidc_discovery,
            key_manager,
            upstream_authority: file.upstream_authority.disk.map(|d| DiskUpstreamConfig {
                cert_file_path: d.cert_file_path,
                key_file_path: d.key_file_path,
                bundle_file_path: d.bundle_file_path,
            }),
            limits: file.limits.resolve().map_err(&in_file)?,
            x509pop_ca_bundle: file.node_attestor.x509pop.map(|x| x.ca_bundle_path),
            bundle_endpoint,
            federates_with,
            trust_domain,
            bind_addr: SocketAddr::new(args.bind_address, args.bind_port),
            data_dir,
            datastore_url,
            socket_path: args.socket_path,
            default_x509_svid_ttl: x509_ttl,
            default_jwt_svid_ttl: args.default_jwt_svid_ttl,
            agent_ttl: args.agent_ttl.unwrap_or(x509_ttl),
            ca_ttl: args.ca_ttl,
            metrics_address: args.metrics_address,
            log_level: args.log_level,
            drain_timeout: args.drain_timeout,
        };
        if config.default_x509_svid_ttl >= config.ca_ttl {
            return Err(ConfigError::Invalid {
                key: "default_x509_svid_ttl",
                message: "must be shorter than ca_ttl".into(),
            });
        }
        Ok(config)
    }
}

/// `jwt_issuer` must be an http(s) URL, as OIDC relying parties compare it with the
/// discovery document's `issuer`.
fn issuer(issuer: &str) -> Result<String, String> {
    let ok = (issuer.starts_with("https://") || issuer.starts_with("http://"))
        && issuer.len() <= 2048
        && issuer.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(issuer.to_owned())
    } else {
        Err(format!("{issuer:?} must be an https:// (or http://) URL"))
    }
}

/// Checks `[server.oidc_discovery]`: domains, and TLS or an explicit choice of plain HTTP.
fn oidc(file: FileOidc) -> Result<OidcConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "oidc_discovery",
        message,
    };
    if file.domains.is_empty() {
        return Err(invalid(
            "domains must list the host names it answers for".into(),
        ));
    }
    let mut domains = Vec::with_capacity(file.domains.len());
    for domain in file.domains {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !ok {
            return Err(invalid(format!("domain {domain:?} is not a host name")));
        }
        domains.push(domain.to_ascii_lowercase());
    }
    let tls = match (file.serving_cert_file, file.allow_insecure_scheme) {
        (Some(c), false) => Some(serving_cert(
            "oidc_discovery.serving_cert_file.file_sync_interval",
            c,
        )?),
        (None, true) => None,
        (Some(_), true) => {
            return Err(invalid(
                "serving_cert_file and allow_insecure_scheme exclude each other".into(),
            ));
        }
        (None, false) => {
            return Err(invalid(
                "give serving_cert_file (TLS) or allow_insecure_scheme = true (plain HTTP \
                 behind a TLS-terminating proxy)"
                    .into(),
            ));
        }
    };
    Ok(OidcConfig {
        address: SocketAddr::new(
            file.address.unwrap_or([0, 0, 0, 0].into()),
            file.port.unwrap_or(8008),
        ),
        domains,
        tls,
    })
}

/// Checks `[server.key_manager.*]`: at most one key manager.
fn key_manager(file: FileKeyManager, td: &TrustDomain) -> Result<KeyManagerConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "key_manager",
        message,
    };
    match (file.disk, file.pkcs11) {
        (Some(_), Some(_)) => Err(invalid("configure either disk or pkcs11, not both".into())),
        (_, None) => Ok(KeyManagerConfig::Disk),
        (None, Some(p)) => {
            if p.token_label.is_empty() {
                return Err(invalid("pkcs11.token_label must not be empty".into()));
            }
            let pin = match (p.pin_env, p.pin_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid("pkcs11: give pin_env or pin_file, not both".into()));
                }
                (None, Some(file)) => PinSource::File(file),
                (env, None) => PinSource::Env(env.unwrap_or_else(|| DEFAULT_PKCS11_PIN_ENV.into())),
            };
            Ok(KeyManagerConfig::Pkcs11(Pkcs11Config {
                module_path: p.module_path,
                token_label: p.token_label,
                pin,
                key_label_prefix: p
                    .key_label_prefix
                    .unwrap_or_else(|| format!("spire-server/{td}/")),
            }))
        }
    }
}

/// Checks one `[server.federation.federates_with."<td>"]` table.
fn relationship(
    own: &TrustDomain,
    td: &str,
    rel: FileRelationship,
) -> Result<FederationRelationship, ConfigError> {
    FederationRelationship::parse(
        own,
        td,
        &rel.bundle_endpoint_url,
        &rel.bundle_endpoint_profile,
        rel.endpoint_spiffe_id.as_deref(),
    )
    .map_err(|message| ConfigError::Invalid {
        key: "federation.federates_with",
        message: format!("{td:?}: {message}"),
    })
}

/// Parses a trust domain name, refusing any spelling but the canonical lowercase one
/// (SPIFFE-ID §2.1: the trust domain MUST be lowercase).
pub fn parse_trust_domain(raw: &str) -> Result<TrustDomain, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "trust_domain",
        message,
    };
    let td = TrustDomain::new(raw).map_err(|e| invalid(format!("{raw:?}: {e}")))?;
    if td.to_string() != raw {
        return Err(invalid(format!("{raw:?}: must be lowercase, e.g. {td:?}")));
    }
    Ok(td)
}

/// Turns a fault of a nested table into the file's error: the file, and the full key
/// (`server.federation.bundle_endpoint`). Without a file there are no tables to fault.
fn in_file(path: Option<PathBuf>, layout: Layout) -> impl Fn(ConfigError) -> ConfigError {
    move |e| match (e, &path, layout.section) {
        (ConfigError::Invalid { key, message }, Some(path), Some(section)) => {
            ConfigError::File(ConfigFileError::Invalid {
                path: path.clone(),
                key: format!("{section}.{key}"),
                message,
            })
        }
        (e, _, _) => e,
    }
}

/// [`parse_trust_domain`] as the `-trustDomain` option's parser.
fn trust_domain_arg(raw: &str) -> Result<TrustDomain, String> {
    parse_trust_domain(raw).map_err(|e| match e {
        ConfigError::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

/// A TTL option's parser: a duration (`1h`, `90s`) of at least a second.
fn ttl(value: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(value).map_err(|e| format!("{value:?}: {e}"))?;
    if parsed < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(parsed)
}

fn duration(
    key: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(&value).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("{value:?}: {e}"),
    })?;
    if parsed < Duration::from_secs(1) {
        return Err(ConfigError::Invalid {
            key,
            message: "must be at least 1s".into(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write config");
        file
    }

    /// `spire-server run ARGS`, validated.
    fn load(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_run_args(args.iter().map(|a| a.to_string()))
    }

    /// `spire-server run -config FILE`.
    fn load_file(file: &tempfile::NamedTempFile) -> Result<ServerConfig, ConfigError> {
        load(&["-config", file.path().to_str().expect("utf-8 path")])
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/config/server.toml"
        );
        let config = load(&["-config", example]).expect("examples/config/server.toml loads");
        assert_eq!(config.trust_domain.to_string(), "example.org");
        assert_eq!(config.bind_addr.port(), 8081);
        assert_eq!(config.ca_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.drain_timeout, common_net::DRAIN_TIMEOUT);
    }

    #[test]
    fn the_drain_timeout_is_an_option_like_the_others() {
        let config = load(&["-trustDomain", "x.org", "-drainTimeout", "60s"]).expect("valid");
        assert_eq!(config.drain_timeout, Duration::from_secs(60));
        let file = write("[server]\ntrust_domain = \"x.org\"\ndrain_timeout = \"2s\"\n");
        assert_eq!(
            load_file(&file).expect("valid").drain_timeout,
            Duration::from_secs(2)
        );
        let file = write("[server]\ntrust_domain = \"x.org\"\ndrain_timeout = \"later\"\n");
        let err = load_file(&file).expect_err("bad duration").to_string();
        assert!(err.contains("server.drain_timeout"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = write("[server]\ntrust_domain = \"file.org\"\nbind_port = 9000\n");
        let path = file.path().to_str().expect("utf-8 path");
        let config = load(&["-config", path, "-trustDomain", "flag.org"]).expect("valid config");
        assert_eq!(config.trust_domain.to_string(), "flag.org");
        assert_eq!(config.bind_addr.port(), 9000);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let file = write("[server]\ntrust_domian = \"x.org\"\n");
        let err = load_file(&file)
            .expect_err("typo must be rejected")
            .to_string();
        assert!(err.contains("trust_domian"), "{err}");

        let err = load(&["-trustDomain", "Bad_Upper.ORG"])
            .expect_err("uppercase TD")
            .to_string();
        assert!(
            err.contains("--trustDomain") && err.contains("lowercase"),
            "{err}"
        );
        let file = write("[server]\ntrust_domain = \"Bad_Upper.ORG\"\n");
        let err = load_file(&file).expect_err("uppercase TD").to_string();
        assert!(
            err.contains("server.trust_domain") && err.contains("lowercase"),
            "{err}"
        );

        let err = load(&["-trustDomain", "x.org", "-caTTL", "soon"])
            .expect_err("bad duration")
            .to_string();
        assert!(err.contains("--caTTL"), "{err}");
        let file = write("[server]\ntrust_domain = \"x.org\"\nca_ttl = \"0s\"\n");
        let err = load_file(&file).expect_err("too short").to_string();
        assert!(
            err.contains("server.ca_ttl") && err.contains("at least 1s"),
            "{err}"
        );
        let file = write("[server]\ntrust_domain = \"x.org\"\njwt_issuer = \"ftp://x\"\n");
        let err = load_file(&file).expect_err("bad issuer").to_string();
        assert!(err.contains("server.jwt_issuer"), "{err}");
        let err = load(&["-trustDomain", "x.org", "-defaultX509SVIDTTL", "48h"])
            .expect_err("x509 TTL beyond the CA's")
            .to_string();
        assert!(err.contains("default_x509_svid_ttl"), "{err}");
        let err = load(&[]).expect_err("no trust domain").to_string();
        assert!(err.contains("--trustDomain"), "{err}");
    }

    #[test]
    fn listener_limits_come_from_their_tables_over_the_presets() {
        let file = write(
            "[server]\ntrust_domain = \"x.org\"\n\
             [server.limits.agent_api]\nmax_handshakes = 64\nhandshake_timeout = \"2s\"\n",
        );
        let limits = load_file(&file).expect("valid").limits;
        assert_eq!(limits.agent_api.max_handshakes, 64);
        assert_eq!(limits.agent_api.handshake_timeout, Duration::from_secs(2));
        assert_eq!(
            limits.agent_api.max_connections,
            common_net::Limits::TLS_API.max_connections
        );
        assert_eq!(limits.admin, common_net::Limits::ADMIN_SOCKET);
        let file = write(
            "[server]\ntrust_domain = \"x.org\"\n[server.limits.metrics]\nidle_timeout = \"0s\"\n",
        );
        let err = load_file(&file).expect_err("zero timeout").to_string();
        assert!(
            err.starts_with("config file ")
                && err.contains("key `server.limits.metrics`")
                && err.contains("idle_timeout"),
            "{err}"
        );
    }

    #[test]
    fn federation_sections_are_read_and_checked() {
        let load = |text: &str| {
            let file = write(&format!("[server]\ntrust_domain = \"example.org\"\n{text}"));
            load_file(&file)
        };
        let good = load(
            "[server.federation.bundle_endpoint]\nport = 8443\nrefresh_hint = \"1m\"\n\
             [server.federation.federates_with.\"other.org\"]\n\
             bundle_endpoint_url = \"https://other:8443\"\n\
             bundle_endpoint_profile = \"https_spiffe\"\n\
             endpoint_spiffe_id = \"spiffe://other.org/spire/server\"\n",
        )
        .expect("valid federation config");
        let endpoint = good.bundle_endpoint.expect("endpoint");
        assert_eq!(endpoint.address.port(), 8443);
        assert_eq!(endpoint.refresh_hint, Duration::from_secs(60));
        assert_eq!(good.federates_with.len(), 1);
        assert_eq!(good.federates_with[0].trust_domain.to_string(), "other.org");

        let relationship = |td: &str, profile: &str, id: &str| {
            format!(
                "[server.federation.federates_with.\"{td}\"]\n\
                 bundle_endpoint_url = \"https://x:1\"\n\
                 bundle_endpoint_profile = \"{profile}\"\n{id}"
            )
        };
        for (text, expected) in [
            (
                relationship("other.org", "https_carrier_pigeon", ""),
                "not supported",
            ),
            (
                relationship("other.org", "https_spiffe", ""),
                "needs the endpoint's SPIFFE ID",
            ),
            (
                relationship(
                    "other.org",
                    "https_spiffe",
                    "endpoint_spiffe_id = \"spiffe://third.org/spire/server\"\n",
                ),
                "not in other.org",
            ),
            (
                relationship(
                    "example.org",
                    "https_spiffe",
                    "endpoint_spiffe_id = \"spiffe://example.org/spire/server\"\n",
                ),
                "own trust domain",
            ),
            (
                relationship("Other.org", "https_web", ""),
                "must be lowercase",
            ),
            (
                relationship(
                    "other.org",
                    "https_spiffe",
                    "endpoint_spiffe_id = \"spiffe://Other.org/spire/server\"\n",
                ),
                "canonical form",
            ),
        ] {
            let err = load(&text).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
            assert!(
                err.starts_with("config file ")
                    && err.contains("key `server.federation.federates_with`"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_bundle_endpoint_profile_decides_which_certificate_is_served() {
        let load = |text: &str| {
            let file = write(&format!(
                "[server]\ntrust_domain = \"example.org\"\n\
                 [server.federation.bundle_endpoint]\nport = 8443\n{text}"
            ));
            load_file(&file)
        };
        let cert = "[server.federation.bundle_endpoint.serving_cert_file]\n\
                    cert_file_path = \"/etc/tls/b.pem\"\nkey_file_path = \"/etc/tls/b.key\"\n";
        let spiffe = load("").expect("https_spiffe by default");
        assert_eq!(spiffe.bundle_endpoint.expect("endpoint").web_cert, None);
        let web = load(&format!("profile = \"https_web\"\n{cert}")).expect("https_web");
        assert_eq!(
            web.bundle_endpoint.expect("endpoint").web_cert,
            Some(ServingCertFiles {
                cert_file_path: "/etc/tls/b.pem".into(),
                key_file_path: "/etc/tls/b.key".into(),
                file_sync_interval: Duration::from_secs(60),
            })
        );
        for (text, expected) in [
            (
                "profile = \"https_web\"\n".to_owned(),
                "needs serving_cert_file",
            ),
            (cert.to_owned(), "serving_cert_file is for profile"),
            (
                format!("profile = \"https_spiffe\"\n{cert}"),
                "serving_cert_file is for profile",
            ),
            ("profile = \"http\"\n".to_owned(), "not supported"),
            (
                format!("profile = \"https_web\"\n{cert}file_sync_interval = \"0s\"\n"),
                "file_sync_interval",
            ),
        ] {
            let err = load(&text).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
            assert!(
                err.starts_with("config file ")
                    && err.contains("key `server.federation.bundle_endpoint"),
                "{err}"
            );
        }
    }
}
