//! Nexus's configuration: flags, then environment variables (SPIKE's names where SPIKE has
//! one), then a TOML file (`--config`, keys named as the flags in snake case), then defaults;
//! checked once at start so a bad value is one clear error naming the option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use identity::workload::Trusted;
use policies::{Role, RoleDomains};
use spiffe::TrustDomain;

/// Nexus's configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nexus",
    version,
    about = "The secrets service: versioned secrets under a root key held only in memory and in keepers"
)]
pub struct Config {
    /// TOML file whose keys (the options below in snake case, e.g. `shamir_threshold = 3`)
    /// set defaults that flags and environment variables override.
    #[arg(long, env = "SPIKE_NEXUS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (mTLS; every client presents an SVID).
    #[arg(long, env = "SPIKE_NEXUS_LISTEN", default_value = "127.0.0.1:8553")]
    pub listen: SocketAddr,
    /// Trust domain of Nexus, its keepers and its admins.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = "spike.ist")]
    pub trust_domain: String,
    /// Foreign trust domains whose workloads may call Nexus, comma separated
    /// (`other.org,third.org`); each also needs its bundle delivered by Nexus's agent (Nexus's
    /// registration entry `federatesWith` it). Their callers are ordinary callers, granted
    /// what policies grant their SPIFFE IDs; a role-shaped ID of theirs holds the role only
    /// where its trust domain is listed for that role (the options below).
    #[arg(long, env = "SPIKE_NEXUS_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub trust_domains: Vec<TrustDomain>,
    /// Foreign trust domains (among `--trust-domains`) whose
    /// `spiffe://<td>/spike/pilot/role/superuser` is a superuser here.
    #[arg(long, env = "SPIKE_NEXUS_SUPERUSER_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub superuser_trust_domains: Vec<TrustDomain>,
    /// Foreign trust domains (among `--trust-domains`) whose
    /// `spiffe://<td>/spike/pilot/role/recover` may export recovery shards here.
    #[arg(long, env = "SPIKE_NEXUS_RECOVER_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub recover_trust_domains: Vec<TrustDomain>,
    /// Foreign trust domains (among `--trust-domains`) whose
    /// `spiffe://<td>/spike/pilot/role/restore` may restore shards here.
    #[arg(long, env = "SPIKE_NEXUS_RESTORE_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub restore_trust_domains: Vec<TrustDomain>,
    /// Foreign trust domains (among `--trust-domains`) whose
    /// `spiffe://<td>/spike/workload/role/lite` may use the cipher routes here.
    #[arg(long, env = "SPIKE_NEXUS_LITE_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub lite_trust_domains: Vec<TrustDomain>,
    /// Foreign trust domains whose `spiffe://<td>/spike/keeper` Nexus accepts as a keeper
    /// when it calls the keepers (their bundles delivered by Nexus's agent).
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub keeper_trust_domains: Vec<TrustDomain>,
    /// Directory for the default SQLite database.
    #[arg(long, env = "SPIKE_NEXUS_DATA_DIR", default_value = "./data/nexus")]
    pub data_dir: PathBuf,
    /// Datastore URL: `sqlite://PATH` or `postgres://...`. Default: `nexus.db` in the data dir.
    #[arg(long, env = "SPIKE_NEXUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Keeper URLs, comma separated (`https://host:port`). A keeper's position (1-based) is
    /// the id of the shard it holds, so keep the order stable.
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_PEERS", value_delimiter = ',')]
    pub keepers: Vec<String>,
    /// How many shards rebuild the root key. Shares = number of keepers.
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_THRESHOLD", default_value_t = 2)]
    pub shamir_threshold: u8,
    /// Versions kept per secret (older ones are deleted from storage).
    #[arg(long, env = "SPIKE_NEXUS_MAX_SECRET_VERSIONS", default_value_t = 10)]
    pub max_secret_versions: u32,
    /// Require check-and-set on every secret write (put and patch), as Vault's global
    /// `cas_required`; a secret can also require it alone (`spike secret metadata put
    /// --cas-required true`).
    #[arg(long, env = "SPIKE_NEXUS_CAS_REQUIRED")]
    pub cas_required: bool,
    /// How often keepers are probed, and re-seeded if they restarted empty.
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub keeper_probe_interval: Duration,
    /// How often expired secret versions (past their `delete_version_after` deadline, already
    /// unreadable) are removed from storage, in bounded batches.
    #[arg(long, env = "SPIKE_NEXUS_PRUNE_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub prune_interval: Duration,
    /// Workload API socket (`unix:///path`); defaults to `SPIFFE_ENDPOINT_SOCKET`.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    pub spiffe_endpoint_socket: Option<String>,
    /// Audit log: a file (appended, created 0600) or `-` for stdout. One JSON line per
    /// request, written before the answer; if it cannot be written, requests fail.
    #[arg(
        long,
        env = "SPIKE_NEXUS_AUDIT_LOG",
        default_value = "-",
        value_name = "FILE|-"
    )]
    pub audit_log: String,
    /// Where Prometheus metrics are served (plain HTTP, `GET /metrics`): keep it on loopback
    /// or a private network. `off` disables them.
    #[arg(
        long,
        env = "SPIKE_NEXUS_METRICS_LISTEN",
        default_value = "127.0.0.1:8554",
        value_name = "ADDRESS|off"
    )]
    pub metrics_listen: String,
    /// Sustained requests per second allowed to one caller (SPIFFE ID); past it, 429 with
    /// `Retry-After`. 0 turns the limit off.
    #[arg(long, env = "SPIKE_NEXUS_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
    /// Requests one caller may send at once after being idle (at least `rate_limit`).
    #[arg(long, env = "SPIKE_NEXUS_RATE_LIMIT_BURST", default_value_t = 2000)]
    pub rate_limit_burst: u32,
    /// Longest a request may take before it is answered 503 `api_timeout`.
    #[arg(long, env = "SPIKE_NEXUS_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Time a client has to send a request's headers (the first one counted from the end of
    /// the TLS handshake) before its connection is closed.
    #[arg(long, env = "SPIKE_NEXUS_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    #[arg(long, env = "SPIKE_NEXUS_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    #[arg(long, env = "SPIKE_NEXUS_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Connections served at once (after the TLS handshake); past it, a new one waits for a
    /// slot until its handshake deadline.
    #[arg(long, env = "SPIKE_NEXUS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections one client (SPIFFE ID) may have served at once; more are closed.
    #[arg(
        long,
        env = "SPIKE_NEXUS_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,
    /// TLS handshakes in progress at once, a budget apart from served connections; when full,
    /// a new connection pushes out the oldest that has not sent a byte.
    #[arg(long, env = "SPIKE_NEXUS_MAX_HANDSHAKES", default_value_t = 256)]
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one IP address.
    #[arg(long, env = "SPIKE_NEXUS_MAX_HANDSHAKES_PER_IP", default_value_t = 128)]
    pub max_handshakes_per_ip: usize,
    /// On SIGTERM or SIGINT, how long requests in flight get to finish (new connections are
    /// refused at once); then the audit log is flushed, keys are forgotten and Nexus exits.
    #[arg(long, env = "SPIKE_NEXUS_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Log level (`RUST_LOG` overrides it).
    #[arg(long, env = "SPIKE_NEXUS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The option and what is wrong with it.
    #[error("--{option}: {reason}")]
    Invalid {
        /// The option's flag name.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        reason: reason.into(),
    }
}

/// The option that sets a field of [`common_net::Limits`] (see [`Config::serve_limits`]).
fn limit_option(field: &'static str) -> &'static str {
    match field {
        "max_connections" => "max-connections",
        "max_connections_per_source" => "max-connections-per-client",
        "max_handshakes" => "max-handshakes",
        "max_handshakes_per_ip" => "max-handshakes-per-ip",
        "handshake_timeout" => "handshake-timeout",
        "header_timeout" => "header-timeout",
        "body_timeout" => "request-timeout",
        "idle_timeout" => "idle-timeout",
        other => other,
    }
}

impl Config {
    /// Checks the values that clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        spiffe::TrustDomain::new(&self.trust_domain)
            .map_err(|e| invalid("trust-domain", e.to_string()))?;
        if self.trust_domain != self.trust_domain.to_ascii_lowercase() {
            return Err(invalid("trust-domain", "must be lowercase"));
        }
        self.callers()?;
        self.keeper_domains()?;
        self.roles()?;
        let shares = self.keepers.len();
        if shares == 0 {
            return Err(invalid(
                "keepers",
                "required: the keepers' URLs (flag, SPIKE_NEXUS_KEEPER_PEERS or `keepers = [...]` in the config file)",
            ));
        }
        if shares > usize::from(u8::MAX) {
            return Err(invalid("keepers", "at most 255 keepers"));
        }
        for (i, url) in self.keepers.iter().enumerate() {
            identity::https_client::HttpsClient::parse_url(url)
                .map_err(|e| invalid("keepers", e.to_string()))?;
            if self.keepers[..i].contains(url) {
                return Err(invalid("keepers", format!("{url} is listed twice")));
            }
        }
        let t = usize::from(self.shamir_threshold);
        if t < 2 || t > shares {
            return Err(invalid(
                "shamir-threshold",
                format!(
                    "need 2 <= threshold <= number of keepers ({shares}), got {t}; a threshold of 1 would give every keeper the whole key"
                ),
            ));
        }
        if self.max_secret_versions == 0 {
            return Err(invalid("max-secret-versions", "must be at least 1"));
        }
        self.metrics_address()?;
        if self.request_timeout.is_zero() {
            return Err(invalid("request-timeout", "must be positive"));
        }
        self.serve_limits()
            .validate()
            .map_err(|e| invalid(limit_option(e.field), e.reason))?;
        if self.keeper_probe_interval.is_zero() {
            return Err(invalid("keeper-probe-interval", "must be positive"));
        }
        if self.prune_interval.is_zero() {
            return Err(invalid("prune-interval", "must be positive"));
        }
        Ok(())
    }

    fn local_trust_domain(&self) -> Result<TrustDomain, ConfigError> {
        TrustDomain::new(&self.trust_domain).map_err(|e| invalid("trust-domain", e.to_string()))
    }

    /// The trust domains whose workloads may connect: this one and `--trust-domains`.
    pub fn callers(&self) -> Result<Trusted, ConfigError> {
        Trusted::new(
            self.local_trust_domain()?,
            self.trust_domains.iter().cloned(),
        )
        .map_err(|e| invalid("trust-domains", e.to_string()))
    }

    /// The trust domains whose keepers Nexus accepts: this one and `--keeper-trust-domains`.
    pub fn keeper_domains(&self) -> Result<Trusted, ConfigError> {
        Trusted::new(
            self.local_trust_domain()?,
            self.keeper_trust_domains.iter().cloned(),
        )
        .map_err(|e| invalid("keeper-trust-domains", e.to_string()))
    }

    /// Where each role is recognised: every role here, and the foreign trust domains listed
    /// for a role. A caller role's trust domain must be one whose callers may connect.
    pub fn roles(&self) -> Result<RoleDomains, ConfigError> {
        let callers = self.callers()?;
        let mut roles = RoleDomains::local(self.trust_domain.clone());
        for (option, role, listed) in [
            (
                "superuser-trust-domains",
                Role::Superuser,
                &self.superuser_trust_domains,
            ),
            (
                "recover-trust-domains",
                Role::Recover,
                &self.recover_trust_domains,
            ),
            (
                "restore-trust-domains",
                Role::Restore,
                &self.restore_trust_domains,
            ),
            ("lite-trust-domains", Role::Lite, &self.lite_trust_domains),
        ] {
            // The same checks as `--trust-domains` (not the local one, none twice).
            Trusted::new(callers.local_trust_domain().clone(), listed.iter().cloned())
                .map_err(|e| invalid(option, e.to_string()))?;
            if let Some(td) = listed.iter().find(|td| !callers.accepts(td)) {
                return Err(invalid(
                    option,
                    format!(
                        "{td} is not in --trust-domains, so its callers cannot connect; list it there too"
                    ),
                ));
            }
            roles = roles.with_foreign(role, listed.iter().map(ToString::to_string));
        }
        let keepers = self.keeper_domains()?;
        Ok(roles.with_foreign(Role::Keeper, keepers.foreign().map(ToString::to_string)))
    }

    /// The datastore URL (the default SQLite file in the data dir unless one is given).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("nexus.db").display()),
        }
    }

    /// The metrics address, or `None` when metrics are off.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        common_metrics::parse_listen(&self.metrics_listen)
            .map_err(|reason| invalid("metrics-listen", reason))
    }

    /// The API's per-caller limits.
    pub fn api_limits(&self) -> crate::api::ApiLimits {
        crate::api::ApiLimits {
            rate_per_second: self.rate_limit,
            burst: self.rate_limit_burst,
            request_timeout: self.request_timeout,
        }
    }

    /// The API listener's limits: these options over [`common_net::Limits::TLS_API`]; a
    /// request body has as long as a request.
    pub fn serve_limits(&self) -> common_net::Limits {
        common_net::Limits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_client,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_ip: self.max_handshakes_per_ip,
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.header_timeout,
            body_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            ..common_net::Limits::TLS_API
        }
    }

    /// Number of shares (one per keeper).
    pub fn shares(&self) -> u8 {
        u8::try_from(self.keepers.len()).unwrap_or(u8::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        common_process::config_file::try_parse_from(
            std::iter::once("nexus").chain(args.iter().copied()),
        )
        .expect("parse")
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config/nexus.toml");
        let config = parse(&["--config", path]);
        config.validate().expect("valid");
        assert_eq!(config.trust_domain, "example.org");
        assert!(config.trust_domains.is_empty());
        assert!(config.superuser_trust_domains.is_empty());
        assert_eq!(config.shares(), 3);
        assert_eq!(config.keeper_probe_interval, Duration::from_secs(5));
        assert!(!config.cas_required);
        let config = parse(&["--config", path, "--shamir-threshold", "3"]);
        assert_eq!(config.shamir_threshold, 3, "flags override the file");
    }

    #[test]
    fn defaults_and_keeper_list() {
        let config = parse(&["--keepers", "https://a:1,https://b:2,https://c:3"]);
        config.validate().expect("valid");
        assert_eq!(config.shares(), 3);
        assert_eq!(config.shamir_threshold, 2);
        assert_eq!(config.max_secret_versions, 10);
        assert!(!config.cas_required);
        assert!(parse(&["--cas-required"]).cas_required);
        assert_eq!(config.drain_timeout, common_net::DRAIN_TIMEOUT);
        assert_eq!(config.prune_interval, Duration::from_secs(60));
        assert!(config.database_url().ends_with("nexus.db"));
    }

    #[test]
    fn listener_limits_default_to_the_tls_api_preset_and_bad_ones_name_the_option() {
        let config = parse(&["--keepers", "https://a:1,https://b:2"]);
        assert_eq!(config.serve_limits().max_handshakes, 256);
        assert_eq!(
            config.serve_limits(),
            common_net::Limits {
                body_timeout: config.request_timeout,
                ..common_net::Limits::TLS_API
            }
        );
        for (flag, option) in [
            ("--max-handshakes", "max-handshakes"),
            ("--max-connections-per-client", "max-connections-per-client"),
            ("--handshake-timeout", "handshake-timeout"),
            ("--idle-timeout", "idle-timeout"),
        ] {
            let value = if flag.ends_with("timeout") { "0s" } else { "0" };
            let error = parse(&["--keepers", "https://a:1,https://b:2", flag, value])
                .validate()
                .expect_err("zero")
                .to_string();
            assert!(error.starts_with(&format!("--{option}")), "{error}");
        }
    }

    #[test]
    fn foreign_trust_domains_by_flag_environment_and_file() {
        let keepers = ["--keepers", "https://a:1,https://b:2"];
        let config = parse(&keepers);
        assert!(config.trust_domains.is_empty());
        let callers = config.callers().expect("valid");
        assert_eq!(callers.foreign().count(), 0);
        assert_eq!(
            config.roles().expect("valid"),
            RoleDomains::local("spike.ist")
        );

        let mut args = keepers.to_vec();
        args.extend([
            "--trust-domain",
            "a.org",
            "--trust-domains",
            "b.org,spiffe://c.org",
            "--superuser-trust-domains",
            "b.org",
            "--keeper-trust-domains",
            "k.org",
        ]);
        let config = parse(&args);
        config.validate().expect("valid");
        let callers: Vec<String> = config
            .callers()
            .expect("valid")
            .foreign()
            .map(ToString::to_string)
            .collect();
        assert_eq!(callers, ["b.org", "c.org"]);
        let roles = config.roles().expect("valid");
        let superuser = |td: &str| format!("spiffe://{td}/spike/pilot/role/superuser");
        assert_eq!(roles.role_of(&superuser("b.org")), Some(Role::Superuser));
        assert_eq!(
            roles.role_of(&superuser("c.org")),
            None,
            "not listed for the role"
        );
        assert_eq!(
            roles.role_of("spiffe://b.org/spike/pilot/role/recover"),
            None
        );
        assert_eq!(
            roles.role_of("spiffe://k.org/spike/keeper"),
            Some(Role::Keeper)
        );
        let keeper_domains = config.keeper_domains().expect("valid");
        assert!(keeper_domains.accepts(&TrustDomain::new("k.org").expect("td")));
        assert!(!keeper_domains.accepts(&TrustDomain::new("b.org").expect("td")));

        // The config file takes lists, as `keepers`.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("nexus.toml");
        std::fs::write(
            &file,
            "trust_domain = \"a.org\"\nkeepers = [\"https://a:1\", \"https://b:2\"]\n\
             trust_domains = [\"b.org\", \"c.org\"]\nrecover_trust_domains = [\"c.org\"]\n",
        )
        .expect("write");
        let config = parse(&["--config", file.to_str().expect("UTF-8")]);
        config.validate().expect("valid");
        assert_eq!(
            config
                .roles()
                .expect("valid")
                .role_of("spiffe://c.org/spike/pilot/role/recover"),
            Some(Role::Recover)
        );
        // An upper-case name in the file is refused naming the key.
        std::fs::write(&file, "trust_domains = [\"B.org\"]\n").expect("write");
        let error = common_process::config_file::try_parse_from::<Config, _, _>([
            "nexus",
            "--config",
            file.to_str().expect("UTF-8"),
        ])
        .expect_err("upper case")
        .to_string();
        assert!(error.contains("key `trust_domains`"), "{error}");
        assert!(error.contains("lowercase"), "{error}");
    }

    #[test]
    fn bad_foreign_trust_domains_name_the_option() {
        let keepers = [
            "--keepers",
            "https://a:1,https://b:2",
            "--trust-domain",
            "a.org",
        ];
        for (extra, option, reason) in [
            (
                vec!["--trust-domains", "a.org"],
                "trust-domains",
                "own trust domain",
            ),
            (
                vec!["--trust-domains", "b.org,b.org"],
                "trust-domains",
                "listed twice",
            ),
            (
                vec!["--superuser-trust-domains", "b.org"],
                "superuser-trust-domains",
                "b.org is not in --trust-domains",
            ),
            (
                vec![
                    "--trust-domains",
                    "b.org",
                    "--restore-trust-domains",
                    "b.org,c.org",
                ],
                "restore-trust-domains",
                "c.org is not in --trust-domains",
            ),
            (
                vec!["--trust-domains", "b.org", "--lite-trust-domains", "a.org"],
                "lite-trust-domains",
                "own trust domain",
            ),
            (
                vec!["--keeper-trust-domains", "a.org"],
                "keeper-trust-domains",
                "own trust domain",
            ),
        ] {
            let mut args = keepers.to_vec();
            args.extend(extra);
            let error = parse(&args).validate().expect_err("invalid").to_string();
            assert!(error.starts_with(&format!("--{option}: ")), "{error}");
            assert!(error.contains(reason), "{error}");
        }
        // Malformed and upper-case names are refused by the parser, naming the flag.
        for bad in ["B.org", "not a td", ""] {
            let error = common_process::config_file::try_parse_from::<Config, _, _>([
                "nexus",
                "--trust-domains",
                bad,
            ])
            .expect_err(bad)
            .to_string();
            assert!(error.contains("--trust-domains"), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
            (vec![], "keepers"),
            (vec!["--keepers", "https://a:1"], "shamir-threshold"),
            (vec!["--keepers", "http://a:1,https://b:1"], "keepers"),
            (vec!["--keepers", "https://a:1,https://a:1"], "keepers"),
            (
                vec![
                    "--keepers",
                    "https://a:1,https://b:1",
                    "--trust-domain",
                    "Bad",
                ],
                "trust-domain",
            ),
            (
                vec![
                    "--keepers",
                    "https://a:1,https://b:1",
                    "--max-secret-versions",
                    "0",
                ],
                "max-secret-versions",
            ),
            (
                vec![
                    "--keepers",
                    "https://a:1,https://b:1",
                    "--prune-interval",
                    "0s",
                ],
                "prune-interval",
            ),
        ] {
            let error = parse(&args).validate().expect_err("invalid").to_string();
            assert!(error.starts_with(&format!("--{option}")), "{error}");
        }
    }
}
