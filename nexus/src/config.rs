//! Nexus's configuration: flags with environment fallbacks (SPIKE's variable names where SPIKE
//! has one), checked once at start so a bad value is one clear error naming the option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Nexus's configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "nexus",
    version,
    about = "The secrets service: versioned secrets under a root key held only in memory and in keepers"
)]
pub struct Config {
    /// Address to listen on (mTLS; every client presents an SVID).
    #[arg(long, env = "SPIKE_NEXUS_LISTEN", default_value = "127.0.0.1:8553")]
    pub listen: SocketAddr,
    /// Trust domain of Nexus, its keepers and its admins.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = "spike.ist")]
    pub trust_domain: String,
    /// Directory for the default SQLite database.
    #[arg(long, env = "SPIKE_NEXUS_DATA_DIR", default_value = "./data/nexus")]
    pub data_dir: PathBuf,
    /// Datastore URL: `sqlite://PATH` or `postgres://...`. Default: `nexus.db` in the data dir.
    #[arg(long, env = "SPIKE_NEXUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Keeper URLs, comma separated (`https://host:port`). A keeper's position (1-based) is
    /// the id of the shard it holds, so keep the order stable.
    #[arg(
        long,
        env = "SPIKE_NEXUS_KEEPER_PEERS",
        value_delimiter = ',',
        required = true
    )]
    pub keepers: Vec<String>,
    /// How many shards rebuild the root key. Shares = number of keepers.
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_THRESHOLD", default_value_t = 2)]
    pub shamir_threshold: u8,
    /// Versions kept per secret (older ones are deleted from storage).
    #[arg(long, env = "SPIKE_NEXUS_MAX_SECRET_VERSIONS", default_value_t = 10)]
    pub max_secret_versions: u32,
    /// How often keepers are probed, and re-seeded if they restarted empty.
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub keeper_probe_interval: Duration,
    /// Workload API socket (`unix:///path`); defaults to `SPIFFE_ENDPOINT_SOCKET`.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET")]
    pub spiffe_endpoint_socket: Option<String>,
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

impl Config {
    /// Checks the values that clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        spiffe::TrustDomain::new(&self.trust_domain)
            .map_err(|e| invalid("trust-domain", e.to_string()))?;
        if self.trust_domain != self.trust_domain.to_ascii_lowercase() {
            return Err(invalid("trust-domain", "must be lowercase"));
        }
        let shares = self.keepers.len();
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
        if self.keeper_probe_interval.is_zero() {
            return Err(invalid("keeper-probe-interval", "must be positive"));
        }
        Ok(())
    }

    /// The datastore URL (the default SQLite file in the data dir unless one is given).
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("nexus.db").display()),
        }
    }

    /// Number of shares (one per keeper).
    pub fn shares(&self) -> u8 {
        u8::try_from(self.keepers.len()).unwrap_or(u8::MAX)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("nexus").chain(args.iter().copied())).expect("parse")
    }

    #[test]
    fn defaults_and_keeper_list() {
        let config = parse(&["--keepers", "https://a:1,https://b:2,https://c:3"]);
        config.validate().expect("valid");
        assert_eq!(config.shares(), 3);
        assert_eq!(config.shamir_threshold, 2);
        assert_eq!(config.max_secret_versions, 10);
        assert!(config.database_url().ends_with("nexus.db"));
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
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
        ] {
            let error = parse(&args).validate().expect_err("invalid").to_string();
            assert!(error.starts_with(&format!("--{option}")), "{error}");
        }
    }
}
