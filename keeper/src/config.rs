//! The keeper's configuration: flags, then environment variables, then a TOML file
//! (`--config`, keys named as the flags in snake case), then defaults; checked once at start.

use std::net::SocketAddr;
use std::time::Duration;

use common_net::Limits;
use identity::workload::Trusted;
use policies::{Role, RoleDomains};
use spiffe::TrustDomain;

/// Keeper configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "keeper",
    version,
    about = "Holds one shard of Nexus's root key, in memory only"
)]
pub struct Config {
    /// TOML file whose keys (the options below in snake case, e.g. `listen = "..."`) set
    /// defaults that flags and environment variables override.
    #[arg(long, env = "SPIKE_KEEPER_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "SPIKE_KEEPER_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Trust domain of Nexus (only `spiffe://<td>/spike/nexus[/...]` may call).
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS", default_value = "spike.ist")]
    pub trust_domain: String,
    /// Foreign trust domains whose Nexus (`spiffe://<td>/spike/nexus[/...]`) may call too,
    /// comma separated; each also needs its bundle delivered by the keeper's agent (the
    /// keeper's registration entry `federatesWith` it).
    #[arg(long, env = "SPIKE_KEEPER_NEXUS_TRUST_DOMAINS", value_delimiter = ',', value_parser = spire_proto::flags::canonical_trust_domain, value_name = "TD,...")]
    pub nexus_trust_domains: Vec<TrustDomain>,
    /// Workload API socket (`unix:///path`); defaults to `SPIFFE_ENDPOINT_SOCKET`.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    pub spiffe_endpoint_socket: Option<String>,
    /// Where Prometheus metrics are served (plain HTTP, `GET /metrics`): refused handshakes
    /// and connections. `off` (the default, since several keepers often share a host) or an
    /// address such as `127.0.0.1:8451`.
    #[arg(
        long,
        env = "SPIKE_KEEPER_METRICS_LISTEN",
        default_value = "off",
        value_name = "ADDRESS|off"
    )]
    pub metrics_listen: String,
    /// Time a client has to finish the TLS handshake.
    #[arg(long, env = "SPIKE_KEEPER_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers (the first one counted from the end of
    /// the TLS handshake) before its connection is closed.
    #[arg(long, env = "SPIKE_KEEPER_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    #[arg(long, env = "SPIKE_KEEPER_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Connections served at once (after the TLS handshake).
    #[arg(long, env = "SPIKE_KEEPER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections one client (SPIFFE ID) may have served at once.
    #[arg(
        long,
        env = "SPIKE_KEEPER_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,
    /// TLS handshakes in progress at once, a budget apart from served connections; when full,
    /// a new connection pushes out the oldest that has not sent a byte.
    #[arg(long, env = "SPIKE_KEEPER_MAX_HANDSHAKES", default_value_t = 256)]
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one IP address.
    #[arg(
        long,
        env = "SPIKE_KEEPER_MAX_HANDSHAKES_PER_IP",
        default_value_t = 128
    )]
    pub max_handshakes_per_ip: usize,
    /// On SIGTERM or SIGINT, how long requests in flight get to finish (new connections are
    /// refused at once); then the shard is forgotten and the keeper exits.
    #[arg(long, env = "SPIKE_KEEPER_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Log level.
    #[arg(long, env = "SPIKE_KEEPER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("--{option}: {reason}")]
pub struct ConfigError {
    /// The option's flag name.
    pub option: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl Config {
    /// The trust domains Nexus may call from: this one and `--nexus-trust-domains`.
    pub fn nexus_domains(&self) -> Result<Trusted, ConfigError> {
        let local =
            spire_proto::flags::canonical_trust_domain(&self.trust_domain).map_err(|reason| {
                ConfigError {
                    option: "trust-domain",
                    reason,
                }
            })?;
        Trusted::new(local, self.nexus_trust_domains.iter().cloned()).map_err(|e| ConfigError {
            option: "nexus-trust-domains",
            reason: e.to_string(),
        })
    }

    /// Where the Nexus role is recognised ([`Config::nexus_domains`]); other roles are
    /// recognised in this trust domain only.
    pub fn roles(&self) -> Result<RoleDomains, ConfigError> {
        let nexus = self.nexus_domains()?;
        Ok(RoleDomains::local(nexus.local_trust_domain().to_string())
            .with_foreign(Role::Nexus, nexus.foreign().map(ToString::to_string)))
    }

    /// The listener's limits: these options over [`Limits::TLS_API`], checked.
    pub fn serve_limits(&self) -> Result<Limits, ConfigError> {
        let limits = Limits {
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_client,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_ip: self.max_handshakes_per_ip,
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            ..Limits::TLS_API
        };
        limits.validate().map_err(|e| ConfigError {
            option: match e.field {
                "max_connections_per_source" => "max-connections-per-client",
                "max_connections" => "max-connections",
                "max_handshakes" => "max-handshakes",
                "max_handshakes_per_ip" => "max-handshakes-per-ip",
                "handshake_timeout" => "handshake-timeout",
                "header_timeout" => "header-timeout",
                "idle_timeout" => "idle-timeout",
                other => other,
            },
            reason: e.reason,
        })?;
        Ok(limits)
    }

    /// The metrics address, or `None` when metrics are off.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        common_metrics::parse_listen(&self.metrics_listen).map_err(|reason| ConfigError {
            option: "metrics-listen",
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        common_process::config_file::try_parse_from(
            std::iter::once("keeper").chain(args.iter().copied()),
        )
        .expect("parse")
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/config/keeper.toml"
        );
        let config = parse(&["--config", path]);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.trust_domain, "example.org");
        assert!(config.nexus_trust_domains.is_empty());
        assert_eq!(
            config.roles().expect("valid"),
            RoleDomains::local("example.org")
        );
        assert_eq!(config.serve_limits().expect("valid"), Limits::TLS_API);
        assert_eq!(config.metrics_address().expect("valid"), None);
        assert_eq!(config.drain_timeout, common_net::DRAIN_TIMEOUT);
        let config = parse(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:9000",
            "--drain-timeout",
            "60s",
        ]);
        assert_eq!(config.drain_timeout, Duration::from_secs(60));
        assert_eq!(
            config.listen.to_string(),
            "127.0.0.1:9000",
            "flags override the file"
        );
    }

    #[test]
    fn a_federated_nexus_by_flag_environment_and_file() {
        let config = parse(&["--trust-domain", "a.org"]);
        assert_eq!(config.nexus_domains().expect("valid").foreign().count(), 0);
        assert_eq!(config.roles().expect("valid"), RoleDomains::local("a.org"));
        let config = parse(&[
            "--trust-domain",
            "a.org",
            "--nexus-trust-domains",
            "b.org,c.org",
        ]);
        let roles = config.roles().expect("valid");
        for (id, role) in [
            ("spiffe://a.org/spike/nexus", Some(Role::Nexus)),
            ("spiffe://b.org/spike/nexus", Some(Role::Nexus)),
            ("spiffe://c.org/spike/nexus/2", Some(Role::Nexus)),
            ("spiffe://d.org/spike/nexus", None),
            ("spiffe://b.org/spike/keeper", None),
        ] {
            assert_eq!(roles.role_of(id), role, "{id}");
        }
        let trusted = config.nexus_domains().expect("valid");
        assert!(trusted.accepts(&TrustDomain::new("c.org").expect("td")));
        assert!(!trusted.accepts(&TrustDomain::new("d.org").expect("td")));

        let dir = std::env::temp_dir().join(format!("keeper-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("keeper.toml");
        std::fs::write(&file, "nexus_trust_domains = [\"b.org\"]\n").expect("write");
        let config = parse(&["--config", file.to_str().expect("UTF-8")]);
        assert_eq!(config.nexus_trust_domains.len(), 1);
        std::fs::write(&file, "nexus_trust_domains = [\"B.org\"]\n").expect("write");
        let error = common_process::config_file::try_parse_from::<Config, _, _>([
            "keeper",
            "--config",
            file.to_str().expect("UTF-8"),
        ])
        .expect_err("upper case")
        .to_string();
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(error.contains("key `nexus_trust_domains`"), "{error}");
        assert!(error.contains("lowercase"), "{error}");

        let error = parse(&["--trust-domain", "a.org", "--nexus-trust-domains", "a.org"])
            .nexus_domains()
            .expect_err("own trust domain");
        assert_eq!(error.option, "nexus-trust-domains");
        assert!(error.reason.contains("own trust domain"), "{error}");
        let error = parse(&["--trust-domain", "A.org"])
            .nexus_domains()
            .expect_err("upper case");
        assert_eq!(error.option, "trust-domain");
    }

    #[test]
    fn bad_limits_and_addresses_name_the_option() {
        let error = parse(&["--max-handshakes", "0"])
            .serve_limits()
            .expect_err("zero");
        assert_eq!(error.option, "max-handshakes");
        let error = parse(&["--idle-timeout", "0s"])
            .serve_limits()
            .expect_err("zero");
        assert_eq!(error.option, "idle-timeout");
        let error = parse(&["--metrics-listen", "localhost"])
            .metrics_address()
            .expect_err("not an IP address");
        assert_eq!(error.option, "metrics-listen");
        let on = parse(&["--metrics-listen", "127.0.0.1:8451"]);
        assert!(on.metrics_address().expect("valid").is_some());
    }
}
