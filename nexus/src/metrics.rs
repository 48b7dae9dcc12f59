//! Nexus's Prometheus metrics: requests by route and status, their latency, the lifecycle
//! (sealed, sealed by an operator, keepers reachable, time to unseal, operators' seals and
//! unseals, rekeys and the keeper set's generation and threshold), how many secrets
//! are stored and how many expired versions the periodic prune removed. Served by
//! [`common_metrics`] on the metrics port, never on the mTLS API.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::service::Nexus;
use crate::store::ReadCacheStats;

/// A route and the status it answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`unmatched` for unknown routes, so labels stay few).
    pub route: String,
    /// The HTTP status.
    pub status: u16,
}

/// A route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The metrics Nexus updates as it works.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    audit_failures: Counter,
    secrets: Gauge,
    unseal_seconds: Gauge<f64, AtomicU64>,
    operator_seals: Counter,
    operator_unseals: Counter,
    rekeys: Counter,
    rekey_failures: Counter,
    versions_pruned: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            audit_failures: Counter::default(),
            secrets: Gauge::default(),
            unseal_seconds: Gauge::default(),
            operator_seals: Counter::default(),
            operator_unseals: Counter::default(),
            rekeys: Counter::default(),
            rekey_failures: Counter::default(),
            versions_pruned: Counter::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Counts a request refused because its audit line could not be written.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    /// Records how many secrets are stored.
    pub fn set_secrets(&self, count: u64) {
        self.secrets.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a seal by an operator through this Nexus.
    pub fn operator_sealed(&self) {
        self.operator_seals.inc();
    }

    /// Counts an operator's unseal through this Nexus.
    pub fn operator_unsealed(&self) {
        self.operator_unseals.inc();
    }

    /// Counts a rekey through this Nexus.
    pub fn rekeyed(&self) {
        self.rekeys.inc();
    }

    /// Counts a rekey refused or failed through this Nexus.
    pub fn rekey_failed(&self) {
        self.rekey_failures.inc();
    }

    /// Counts `n` expired versions removed from storage by this Nexus's periodic prune.
    pub fn versions_pruned(&self, n: u64) {
        self.versions_pruned.inc_by(n);
    }

    /// Expired versions this Nexus's periodic prune removed so far.
    pub fn versions_pruned_total(&self) -> u64 {
        self.versions_pruned.get()
    }

    /// Records how long the last unseal took.
    pub fn set_unseal_seconds(&self, seconds: f64) {
        self.unseal_seconds.set(seconds);
    }
}

/// A registry with Nexus's metrics, reading lifecycle state from `nexus` at each scrape.
pub fn registry(nexus: Arc<Nexus>) -> Registry {
    let mut registry = Registry::with_prefix("nexus");
    let m = &nexus.metrics;
    registry.register(
        "http_requests",
        "API requests answered, by route and status",
        m.requests.clone(),
    );
    registry.register(
        "http_request_duration_seconds",
        "Time from a request's arrival to its answer, by route",
        m.latency.clone(),
    );
    registry.register(
        "audit_failures",
        "Requests refused because their audit line could not be written",
        m.audit_failures.clone(),
    );
    registry.register(
        "secrets",
        "Secrets stored (read from the datastore at each scrape)",
        m.secrets.clone(),
    );
    registry.register(
        "unseal_duration_seconds",
        "How long the last unseal took, from the start of unsealing to ready",
        m.unseal_seconds.clone(),
    );
    registry.register(
        "operator_seals",
        "Seals by an operator (`spike operator seal`) through this Nexus",
        m.operator_seals.clone(),
    );
    registry.register(
        "operator_unseals",
        "Unseals by an operator (`spike operator unseal`) through this Nexus",
        m.operator_unseals.clone(),
    );
    registry.register(
        "rekeys",
        "Rekeys (`spike operator rekey`) through this Nexus",
        m.rekeys.clone(),
    );
    registry.register(
        "rekey_failures",
        "Rekeys refused or failed through this Nexus (bad input, a keeper unreachable, another rekey running)",
        m.rekey_failures.clone(),
    );
    registry.register(
        "expired_versions_pruned",
        "Expired secret versions (past their deletion time) removed from storage by this Nexus's periodic prune",
        m.versions_pruned.clone(),
    );
    registry.register_collector(Box::new(Lifecycle(nexus)));
    registry
}

/// Reads the lifecycle from [`crate::keys::Lifecycle`] at scrape time.
#[derive(Debug)]
struct Lifecycle(Arc<Nexus>);

impl Collector for Lifecycle {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = self.0.keys.status();
        let gauges: [(&str, &str, i64); 7] = [
            (
                "sealed",
                "1 while Nexus has no root key in memory (it answers state_not_ready), else 0",
                i64::from(self.0.keys.root().is_none()),
            ),
            (
                "sealed_by_operator",
                "1 while an operator's seal holds (`spike operator seal`; any replica), else 0",
                i64::from(status.operator_seal.is_some()),
            ),
            (
                "initialized",
                "1 once the datastore holds a root key record",
                i64::from(status.initialized),
            ),
            (
                "keepers_reachable",
                "Keepers that answered the last probe",
                i64::try_from(status.keepers.reachable).unwrap_or(i64::MAX),
            ),
            (
                "keepers",
                "Keepers of the keeper set in force (configured, or chosen by the last rekey)",
                i64::try_from(status.keepers.total).unwrap_or(i64::MAX),
            ),
            (
                "keeper_generation",
                "Generation of the keeper set in force: 0 as configured, one more per rekey",
                i64::try_from(status.keepers.generation).unwrap_or(i64::MAX),
            ),
            (
                "shamir_threshold",
                "Shards of the keeper set in force needed to rebuild the root key",
                i64::from(status.keepers.threshold),
            ),
        ];
        encode_gauges(&mut encoder, &gauges)?;
        if let Some(stats) = self.0.store.read_cache_stats() {
            encode_read_cache(&mut encoder, stats)?;
        }
        Ok(())
    }
}

/// The read cache's counts (SQLite only, see `store/read_cache.rs`).
fn encode_read_cache(
    encoder: &mut DescriptorEncoder<'_>,
    stats: ReadCacheStats,
) -> Result<(), std::fmt::Error> {
    let counters = [
        (
            "read_cache_hits",
            "Secret reads served from the sealed-row cache",
            stats.hits,
        ),
        (
            "read_cache_misses",
            "Secret reads that went to the datastore",
            stats.misses,
        ),
        (
            "read_cache_suspensions",
            "Writes dropped before their commit returned, each suspending the read cache until the write lock was free",
            stats.suspensions,
        ),
    ];
    for (name, help, value) in counters {
        let counter = ConstCounter::new(value);
        let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric)?;
    }
    let gauges = [
        (
            "read_cache_rows",
            "Sealed rows the read cache holds",
            i64::try_from(stats.rows).unwrap_or(i64::MAX),
        ),
        (
            "read_cache_suspended",
            "1 while the read cache is suspended (reads go to the datastore), else 0",
            i64::from(stats.suspended),
        ),
    ];
    encode_gauges(encoder, &gauges)
}

/// Gauges read at scrape time, as `(name, help, value)`.
fn encode_gauges(
    encoder: &mut DescriptorEncoder<'_>,
    gauges: &[(&str, &str, i64)],
) -> Result<(), std::fmt::Error> {
    for &(name, help, value) in gauges {
        let gauge = ConstGauge::new(value);
        let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
        gauge.encode(metric)?;
    }
    Ok(())
}
