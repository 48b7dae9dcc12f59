//! The server's Prometheus metrics: SVIDs signed by kind, node attestations by outcome, and
//! registration entries and attested agents counted from the datastore at each scrape.
//! Served by [`common_metrics`] when `metricsAddress` is set.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::ServerState;

/// What was signed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SvidLabels {
    /// `x509` or `jwt`.
    pub kind: &'static str,
    /// `workload`, `agent` (attestation and renewal) or `mint` (admin CLI).
    pub r#for: &'static str,
}

/// How an attestation ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or `refused`.
    pub outcome: &'static str,
}

/// Counters the server's APIs update.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    svids: Family<SvidLabels, Counter>,
    attestations: Family<OutcomeLabels, Counter>,
    entries: Gauge,
    agents: Gauge,
}

impl ServerMetrics {
    /// Counts `n` signed SVIDs.
    pub fn signed(&self, kind: &'static str, r#for: &'static str, n: u64) {
        self.svids
            .get_or_create(&SvidLabels { kind, r#for })
            .inc_by(n);
    }

    /// Counts one node attestation.
    pub fn attestation(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.attestations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// The registry, and the refresh that reads the datastore's counts before each scrape.
pub fn registry(state: &Arc<ServerState>) -> Registry {
    let m = &state.metrics;
    let mut registry = Registry::with_prefix("spire_server");
    registry.register(
        "svids_signed",
        "SVIDs signed, by kind and purpose",
        m.svids.clone(),
    );
    registry.register(
        "node_attestations",
        "Node attestations, by outcome",
        m.attestations.clone(),
    );
    registry.register("entries", "Registration entries", m.entries.clone());
    registry.register("agents", "Attested agents", m.agents.clone());
    registry
}

/// Reads the gauges' values from the datastore.
pub async fn refresh(state: Arc<ServerState>) {
    if let Ok(count) = state.datastore.count_entries().await {
        state.metrics.entries.set(count);
    }
    if let Ok(agents) = state.datastore.list_attested_agents().await {
        state
            .metrics
            .agents
            .set(i64::try_from(agents.len()).unwrap_or(i64::MAX));
    }
}
