//! The agent's Prometheus metrics: Workload API calls by RPC and gRPC status, calls refused
//! by a per-caller limit ([`crate::workload::limits`]), and the SVIDs in its cache. Served by [`common_metrics`] when `metricsAddress` is set.
//!
//! Calls are counted by a tower layer around the gRPC server: it sees every request's method
//! path and the status a response starts with (`grpc-status` in the headers for errors, which
//! tonic sends trailers-only; none for a unary success or a stream that started).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::manager::Snapshot;

/// The Workload API's methods; anything else is counted as `other`.
const RPCS: [&str; 5] = [
    "FetchX509SVID",
    "FetchX509Bundles",
    "FetchJWTSVID",
    "FetchJWTBundles",
    "ValidateJWTSVID",
];

/// An RPC and how it was answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The method name (`other` for unknown paths, `Check` and `Watch` for health).
    pub rpc: &'static str,
    /// The gRPC status the response started with (`OK` for a success or a started stream).
    pub code: String,
}

/// An RPC refused by a per-caller limit, and which limit.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The method name.
    pub rpc: &'static str,
    /// `rate` or `streams`.
    pub limit: &'static str,
}

/// Workload API call counts.
#[derive(Debug, Clone, Default)]
pub struct AgentMetrics {
    calls: Family<CallLabels, Counter>,
    limited: Family<LimitLabels, Counter>,
}

impl AgentMetrics {
    fn call(&self, rpc: &'static str, code: String) {
        self.calls.get_or_create(&CallLabels { rpc, code }).inc();
    }

    /// Counts a call refused by a per-caller limit. It is also counted, once answered, under
    /// `workload_api_calls` with code `ResourceExhausted`.
    pub fn limited(&self, rpc: &'static str, limit: &'static str) {
        self.limited
            .get_or_create(&LimitLabels { rpc, limit })
            .inc();
    }

    /// The registry, reading the SVID cache at each scrape.
    pub fn registry(&self, cache: watch::Receiver<Arc<Snapshot>>) -> Registry {
        let mut registry = Registry::with_prefix("spire_agent");
        registry.register(
            "workload_api_calls",
            "Workload API calls, by RPC and the gRPC status they were answered with",
            self.calls.clone(),
        );
        registry.register(
            "workload_api_limited",
            "Workload API calls refused with ResourceExhausted by a per-caller limit, by RPC and limit (rate, streams)",
            self.limited.clone(),
        );
        registry.register_collector(Box::new(CacheGauges(cache)));
        registry
    }

    /// The tower layer that counts calls.
    pub fn layer(&self) -> CountCalls {
        CountCalls {
            metrics: self.clone(),
        }
    }
}

#[derive(Debug)]
struct CacheGauges(watch::Receiver<Arc<Snapshot>>);

impl Collector for CacheGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let svids = i64::try_from(self.0.borrow().svids.len()).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(svids);
        let metric = encoder.encode_descriptor(
            "svids_cached",
            "Workload X509-SVIDs held for this agent's entries",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// Counts gRPC calls ([`AgentMetrics::layer`]).
#[derive(Debug, Clone)]
pub struct CountCalls {
    metrics: AgentMetrics,
}

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A gRPC service whose calls are counted.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: AgentMetrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let rpc = RPCS
            .into_iter()
            .chain(["Check", "Watch"])
            .find(|known| *known == method)
            .unwrap_or("other");
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or_else(
                    || "OK".to_owned(),
                    |n| format!("{:?}", tonic::Code::from_i32(n)),
                );
            metrics.call(rpc, code);
            Ok(response)
        })
    }
}
