//! How much one listener lets its clients hold, and for how long: [`Limits`], its presets for
//! each kind of listener, and [`LimitsFile`], the same as an optional section of a TOML file.
//!
//! Every phase of a connection has its bound: the TLS handshake (a budget of its own, so a
//! flood of connections that never finish it cannot starve authenticated clients), the first
//! request (HTTP/1-or-2 detection and headers), each request's headers and body, the idle time
//! between requests, and HTTP/2 pings. Counts are capped overall and per source: the peer's IP
//! address before authentication, its SPIFFE ID after, its UID and PID on a Unix socket.

use std::time::Duration;

use serde::Deserialize;

/// Bounds on one listener's connections. Fields that do not apply to a listener (handshakes
/// on a Unix socket, processes on TCP) are ignored by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (after the TLS handshake, if any).
    pub max_connections: usize,
    /// Connections one source may have served at once: one SPIFFE ID (or one IP address for
    /// clients without a certificate) on TCP, one UID on a Unix socket.
    pub max_connections_per_source: usize,
    /// Connections one process (PID) may have open on a Unix socket.
    pub max_connections_per_process: usize,
    /// TLS handshakes in progress at once. Past it, a new connection pushes out the oldest
    /// one that has not sent a byte yet (else the oldest), from the address with the most.
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one IP address (the same rule within it).
    pub max_handshakes_per_ip: usize,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers: the first one counted from the start
    /// of the connection (after TLS), so it also bounds HTTP/1-or-2 detection; with HTTP/1
    /// each later one counted from the previous answer.
    pub header_timeout: Duration,
    /// Time a client has to send a request's whole body, counted from its headers.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in progress (after its first one),
    /// and the time a connection being closed gets to finish.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub keepalive_interval: Duration,
    /// Time a client has to answer a ping before its connection is closed.
    pub keepalive_timeout: Duration,
    /// After the server closed a connection, how long it goes on reading (and discarding)
    /// what the client still sends, so an answer sent before the request was read (a 413)
    /// reaches a client that sends its whole body first; 0 turns it off.
    pub linger_time: Duration,
    /// The most bytes read (and discarded) while lingering.
    pub linger_bytes: usize,
}

impl Limits {
    /// An mTLS API on TCP (Nexus, keepers, the identity server's agent API and bundle
    /// endpoint): a thousand clients at once, a few seconds for each phase.
    pub const TLS_API: Limits = Limits {
        max_connections: 1024,
        max_connections_per_source: 256,
        max_connections_per_process: 256,
        max_handshakes: 256,
        max_handshakes_per_ip: 128,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        linger_time: Duration::from_secs(10),
        linger_bytes: 16 << 20,
    };

    /// A plain-HTTP metrics endpoint: a few scrapers, each request a small GET.
    pub const METRICS: Limits = Limits {
        max_connections: 64,
        max_connections_per_source: 32,
        max_connections_per_process: 32,
        max_handshakes: 64,
        max_handshakes_per_ip: 32,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        linger_time: Duration::from_secs(1),
        linger_bytes: 64 << 10,
    };

    /// The agent's Workload API socket: every local process may connect; a client usually
    /// keeps one connection with a stream open for as long as it runs.
    pub const WORKLOAD_API: Limits = Limits {
        max_connections: 1024,
        max_connections_per_source: 256,
        max_connections_per_process: 16,
        max_handshakes: 256,
        max_handshakes_per_ip: 128,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        linger_time: Duration::from_secs(1),
        linger_bytes: 64 << 10,
    };

    /// An admin socket (only its owner can connect): a CLI call at a time.
    pub const ADMIN_SOCKET: Limits = Limits {
        max_connections: 64,
        max_connections_per_source: 64,
        max_connections_per_process: 16,
        max_handshakes: 64,
        max_handshakes_per_ip: 64,
        handshake_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        linger_time: Duration::from_secs(1),
        linger_bytes: 64 << 10,
    };

    /// The most file descriptors this listener may hold: served connections and handshakes.
    pub fn descriptors(&self) -> u64 {
        (self.max_connections + self.max_handshakes) as u64
    }

    /// Checks that every count is at least 1 and every timeout positive (lingering may be
    /// off), naming the first field that is not.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let counts = [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_source",
                self.max_connections_per_source,
            ),
            (
                "max_connections_per_process",
                self.max_connections_per_process,
            ),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(LimitsError::invalid(field, "must be at least 1"));
            }
        }
        let timeouts = [
            ("handshake_timeout", self.handshake_timeout),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ];
        for (field, value) in timeouts {
            if value.is_zero() {
                return Err(LimitsError::invalid(field, "must be positive"));
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::TLS_API
    }
}

/// A limit that cannot work, and which one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct LimitsError {
    /// The field, as named in [`Limits`] and in config files.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl LimitsError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        LimitsError {
            field,
            reason: reason.into(),
        }
    }
}

/// [`Limits`] as a section of a TOML config file: every key optional (named as the field,
/// durations as `"5s"`, `"250ms"`), unknown keys refused. [`LimitsFile::over`] lays it over a
/// preset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<usize>,
    pub max_connections_per_source: Option<usize>,
    pub max_connections_per_process: Option<usize>,
    pub max_handshakes: Option<usize>,
    pub max_handshakes_per_ip: Option<usize>,
    pub handshake_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub keepalive_interval: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub linger_time: Option<String>,
    pub linger_bytes: Option<usize>,
}

impl LimitsFile {
    /// `preset` with `table`'s keys laid over it, if the config file has the table.
    pub fn resolve(table: Option<&LimitsFile>, preset: Limits) -> Result<Limits, LimitsError> {
        table.map_or(Ok(preset), |table| table.over(preset))
    }

    /// `base` with every key this section sets replaced, validated.
    pub fn over(&self, base: Limits) -> Result<Limits, LimitsError> {
        let duration = |field: &'static str, value: &Option<String>, default: Duration| {
            value.as_deref().map_or(Ok(default), |text| {
                humantime::parse_duration(text)
                    .map_err(|e| LimitsError::invalid(field, format!("{text:?}: {e}")))
            })
        };
        let limits = Limits {
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            max_connections_per_source: self
                .max_connections_per_source
                .unwrap_or(base.max_connections_per_source),
            max_connections_per_process: self
                .max_connections_per_process
                .unwrap_or(base.max_connections_per_process),
            max_handshakes: self.max_handshakes.unwrap_or(base.max_handshakes),
            max_handshakes_per_ip: self
                .max_handshakes_per_ip
                .unwrap_or(base.max_handshakes_per_ip),
            handshake_timeout: duration(
                "handshake_timeout",
                &self.handshake_timeout,
                base.handshake_timeout,
            )?,
            header_timeout: duration("header_timeout", &self.header_timeout, base.header_timeout)?,
            body_timeout: duration("body_timeout", &self.body_timeout, base.body_timeout)?,
            idle_timeout: duration("idle_timeout", &self.idle_timeout, base.idle_timeout)?,
            keepalive_interval: duration(
                "keepalive_interval",
                &self.keepalive_interval,
                base.keepalive_interval,
            )?,
            keepalive_timeout: duration(
                "keepalive_timeout",
                &self.keepalive_timeout,
                base.keepalive_timeout,
            )?,
            linger_time: duration("linger_time", &self.linger_time, base.linger_time)?,
            linger_bytes: self.linger_bytes.unwrap_or(base.linger_bytes),
        };
        limits.validate()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for preset in [
            Limits::TLS_API,
            Limits::METRICS,
            Limits::WORKLOAD_API,
            Limits::ADMIN_SOCKET,
        ] {
            preset.validate().expect("a valid preset");
        }
    }

    #[test]
    fn a_file_section_replaces_only_what_it_sets() {
        let file: LimitsFile = toml::from_str(
            "max_handshakes = 32\nhandshake_timeout = \"2s\"\nlinger_time = \"0s\"\n",
        )
        .expect("valid TOML");
        let limits = file.over(Limits::TLS_API).expect("valid limits");
        assert_eq!(limits.max_handshakes, 32);
        assert_eq!(limits.handshake_timeout, Duration::from_secs(2));
        assert_eq!(limits.linger_time, Duration::ZERO, "lingering may be off");
        assert_eq!(limits.max_connections, Limits::TLS_API.max_connections);
        assert_eq!(limits.idle_timeout, Limits::TLS_API.idle_timeout);
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_field() {
        let zero = LimitsFile {
            max_connections: Some(0),
            ..LimitsFile::default()
        };
        let error = zero.over(Limits::TLS_API).expect_err("zero connections");
        assert_eq!(error.field, "max_connections");
        let never = LimitsFile {
            header_timeout: Some("0s".into()),
            ..LimitsFile::default()
        };
        assert_eq!(
            never.over(Limits::TLS_API).expect_err("no time").field,
            "header_timeout"
        );
        let garbled = LimitsFile {
            idle_timeout: Some("soon".into()),
            ..LimitsFile::default()
        };
        let error = garbled.over(Limits::TLS_API).expect_err("not a duration");
        assert_eq!(error.field, "idle_timeout");
        assert!(error.to_string().contains("soon"), "{error}");
        let typo = toml::from_str::<LimitsFile>("max_handshake = 3\n").expect_err("typo");
        assert!(typo.to_string().contains("max_handshake"), "{typo}");
    }
}
