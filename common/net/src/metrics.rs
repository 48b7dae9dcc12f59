//! What the listeners count, for every binary's `/metrics`: connections refused by a budget,
//! connections closed for taking too long, TLS handshakes that failed (by reason), and
//! connections open; each labelled with the listener (`api`, `metrics`, `workload_api`, ...).
//!
//! A [`NetMetrics`] is registered once in a binary's registry; each listener gets a
//! [`ListenerMetrics`] from it, which also writes the rate-limited warnings for events a
//! client can cause at will ([`crate::log_limit`]).

use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::log_limit::LogLimiter;

/// A listener and why something happened to a connection on it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The listener (`api`, `metrics`, `workload_api`, `admin`, `agent_api`, ...).
    pub listener: &'static str,
    /// Why (for example `per_source`, `idle_timeout`, `unknown_issuer`).
    pub reason: &'static str,
}

/// A listener.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// The listener's name.
    pub listener: &'static str,
}

/// The counters of every listener of a process.
#[derive(Debug, Clone, Default)]
pub struct NetMetrics {
    refused: Family<ReasonLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    open: Family<ListenerLabels, Gauge>,
}

impl NetMetrics {
    /// Registers the families in `registry` (names get the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_refused",
            "Connections closed at once because a budget was full, by listener and reason (capacity, per_source, per_process, ...)",
            self.refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed for taking too long, by listener and reason (header_timeout: no complete request headers in time, idle_timeout: no new request in time)",
            self.closed.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that did not complete, by listener and reason (unknown_issuer, expired, no_certificate, foreign_trust_domain, wrong_role, timeout, evicted, not_tls, ...)",
            self.handshake_failures.clone(),
        );
        registry.register(
            "connections_open",
            "Connections being served now, by listener",
            self.open.clone(),
        );
    }

    /// The handle listener `name` counts through.
    pub fn listener(&self, name: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            name,
            metrics: self.clone(),
            log: Arc::new(LogLimiter::default()),
        }
    }
}

/// One listener's counters and its log limiter.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    name: &'static str,
    metrics: NetMetrics,
    log: Arc<LogLimiter>,
}

impl Default for ListenerMetrics {
    /// Counters registered nowhere (for servers without a metrics endpoint, and tests).
    fn default() -> Self {
        NetMetrics::default().listener("unnamed")
    }
}

impl ListenerMetrics {
    /// The listener's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn labels(&self, reason: &'static str) -> ReasonLabels {
        ReasonLabels {
            listener: self.name,
            reason,
        }
    }

    /// Counts a connection from `peer` refused by a budget, with a rate-limited warning.
    pub fn refused(&self, reason: &'static str, peer: &dyn Display) {
        self.metrics
            .refused
            .get_or_create(&self.labels(reason))
            .inc();
        if let Some(suppressed) = self.log.admit(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                peer = %peer,
                reason,
                suppressed,
                "connection refused: budget full"
            );
        }
    }

    /// Counts a connection closed by the server for taking too long.
    pub fn closed(&self, reason: &'static str) {
        self.metrics
            .closed
            .get_or_create(&self.labels(reason))
            .inc();
        tracing::debug!(listener = self.name, reason, "connection closed");
    }

    /// Counts a failed TLS handshake with `peer`, with a rate-limited warning.
    pub fn handshake_failed(&self, reason: &'static str, peer: &dyn Display, detail: &dyn Display) {
        self.count_handshake_failure(reason);
        if let Some(suppressed) = self.log.admit(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                peer = %peer,
                reason,
                error = %detail,
                suppressed,
                "TLS handshake failed"
            );
        }
    }

    /// Counts a failed TLS handshake without a warning (a client that left before sending
    /// anything: TCP health checks and port probes do that all day).
    pub fn count_handshake_failure(&self, reason: &'static str) {
        self.metrics
            .handshake_failures
            .get_or_create(&self.labels(reason))
            .inc();
    }

    /// The gauge of this listener's open connections (see [`crate::budget::Slot`]).
    pub fn open(&self) -> Gauge {
        self.metrics
            .open
            .get_or_create(&ListenerLabels {
                listener: self.name,
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_its_labels() {
        let net = NetMetrics::default();
        let mut registry = Registry::with_prefix("svc");
        net.register(&mut registry);
        let api = net.listener("api");
        api.refused("per_source", &"127.0.0.1:1");
        api.closed("idle_timeout");
        api.handshake_failed(
            "unknown_issuer",
            &"127.0.0.1:2",
            &"invalid peer certificate",
        );
        api.open().inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "svc_connections_refused_total{listener=\"api\",reason=\"per_source\"} 1",
            "svc_connections_closed_total{listener=\"api\",reason=\"idle_timeout\"} 1",
            "svc_tls_handshake_failures_total{listener=\"api\",reason=\"unknown_issuer\"} 1",
            "svc_connections_open{listener=\"api\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
