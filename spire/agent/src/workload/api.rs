//! The `SpiffeWorkloadAPI` service on the agent's Unix socket.
//!
//! Each call first checks the `workload.spiffe.io: true` security header (Workload Endpoint
//! standard §4: InvalidArgument without it), then the caller's limits (its call rate and, for
//! streams, how many it has open: [`super::limits`], ResourceExhausted beyond them), then
//! attests the caller through the kernel and matches its selectors against the cached entries. Streams send the current state at once
//! and again on every cache change, always the full state, never deltas (Workload API §5).
//! When the agent stops, every stream ends at once with Unavailable (the clients' cue to
//! reconnect, to this agent's successor or another), so that open streams do not hold the
//! shutdown for the drain timeout that unary calls in flight get.
//! The JWT profile's logic lives in [`super::jwt`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use common_net::unix::UnixPeer;
use futures::{Stream, StreamExt};
use spire_proto::server::Selector;
use spire_proto::workload as wl;
use spire_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::attestor::{AttestError, Caller, UnixAttestor};
use super::jwt;
use super::limits::{CallerKey, CallerLimits, Refused, StreamSlot};
use crate::jwt_svids::JwtSvids;
use crate::manager::{Snapshot, WorkloadSvid};
use crate::metrics::AgentMetrics;

/// The message clients key on when nothing matches them (rust-spiffe maps this substring to
/// `NoIdentityIssued`).
pub const NO_IDENTITY: &str = "no identity issued";

/// Checks the Workload API security header on every call.
pub fn require_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    let values: Vec<_> = request
        .metadata()
        .get_all("workload.spiffe.io")
        .iter()
        .collect();
    match values.as_slice() {
        [only] if only.as_bytes() == b"true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The status streams end with when the agent stops.
pub const SHUTTING_DOWN: &str = "the agent is shutting down";

/// The Workload API.
pub struct WorkloadApi {
    cache: watch::Receiver<Arc<Snapshot>>,
    /// Turns true when the agent stops: streams end.
    stopping: watch::Receiver<bool>,
    attestor: Arc<UnixAttestor>,
    jwt: Arc<JwtSvids>,
    limits: Arc<CallerLimits>,
    metrics: AgentMetrics,
}

impl WorkloadApi {
    /// The API over `cache`; its streams end once `stopping` turns true (or its sender is
    /// gone).
    pub fn new(
        cache: watch::Receiver<Arc<Snapshot>>,
        stopping: watch::Receiver<bool>,
        attestor: Arc<UnixAttestor>,
        jwt: Arc<JwtSvids>,
        limits: Arc<CallerLimits>,
        metrics: AgentMetrics,
    ) -> Self {
        WorkloadApi {
            cache,
            stopping,
            attestor,
            jwt,
            limits,
            metrics,
        }
    }

    /// The caller's peer credentials, if it is within its call rate. Runs before
    /// attestation, so a refused call costs no `/proc` reads.
    fn admit<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<Caller, Status> {
        let peer = request.extensions().get::<UnixPeer>().ok_or_else(|| {
            Status::unavailable("workload attestation failed: no peer credentials")
        })?;
        let caller = Caller {
            pid: peer.pid.unwrap_or(0),
            uid: peer.uid,
            gid: peer.gid,
        };
        self.limits
            .check_rate(CallerKey::of(&caller))
            .map_err(|refused| self.refuse(rpc, &caller, &refused))?;
        Ok(caller)
    }

    /// One of the caller's stream slots, held until the stream ends.
    fn open_stream(&self, caller: &Caller, rpc: &'static str) -> Result<StreamSlot, Status> {
        self.limits
            .open_stream(CallerKey::of(caller))
            .map_err(|refused| self.refuse(rpc, caller, &refused))
    }

    fn refuse(&self, rpc: &'static str, caller: &Caller, refused: &Refused) -> Status {
        self.metrics.limited(rpc, refused.limit());
        // Debug only: a flood would otherwise flood the log too.
        tracing::debug!(
            rpc,
            pid = caller.pid,
            uid = caller.uid,
            limit = refused.limit(),
            "Workload API call refused"
        );
        refused.status()
    }

    /// The caller's selectors, from its socket credentials and /proc.
    /// The stream of an RPC that answers only a caller with an identity: counts the
    /// admitted `caller`'s stream, attests it, refuses it if no entry matches, then streams
    /// `respond(snapshot, its SVIDs)` now and as the cache changes (see [`watch_stream`]).
    async fn identity_stream<T, F>(
        &self,
        caller: Caller,
        rpc: &'static str,
        respond: F,
    ) -> Result<Response<ResponseStream<T>>, Status>
    where
        T: Clone + PartialEq + Send + 'static,
        F: Fn(&Snapshot, &[&Arc<WorkloadSvid>]) -> T + Send + 'static,
    {
        let slot = self.open_stream(&caller, rpc)?;
        let selectors = self.attest(caller).await?;
        if matching(&self.cache.borrow(), &selectors).is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        Ok(Response::new(watch_stream(
            self.cache.clone(),
            self.stopping.clone(),
            slot,
            move |snapshot| {
                let svids = matching(snapshot, &selectors);
                (!svids.is_empty()).then(|| respond(snapshot, &svids))
            },
        )))
    }

    async fn attest(&self, caller: Caller) -> Result<Vec<Selector>, Status> {
        let attestor = self.attestor.clone();
        let result = tokio::task::spawn_blocking(move || attestor.attest(caller))
            .await
            .map_err(|_| Status::unavailable("workload attestation failed"))?;
        result.map_err(|e| match e {
            AttestError::CallerGone { .. } => {
                Status::unauthenticated("could not verify existence of the original caller")
            }
            other => {
                tracing::warn!(error = %other, "workload attestation failed");
                Status::unavailable("workload attestation failed")
            }
        })
    }
}

/// The SVIDs whose entry selectors are all among the caller's, in cache (entry ID) order.
pub fn matching<'a>(snapshot: &'a Snapshot, selectors: &[Selector]) -> Vec<&'a Arc<WorkloadSvid>> {
    snapshot
        .svids
        .iter()
        .filter(|svid| svid.entry.selectors.iter().all(|s| selectors.contains(s)))
        .collect()
}

/// The key of a bundle map: the trust domain's ID, `spiffe://<td>`, as SPIRE sends it.
pub(crate) fn td_key(snapshot: &Snapshot) -> String {
    format!("spiffe://{}", snapshot.trust_domain)
}

fn x509_svid_response(
    snapshot: &Snapshot,
    svids_in: &[&Arc<WorkloadSvid>],
) -> wl::X509svidResponse {
    let svids = svids_in;
    let bundle = snapshot.bundle.concat();
    let mut seen_hints = std::collections::HashSet::new();
    let svids = svids
        .iter()
        // Workload API §5.3: non-empty hints are unique within a response; the first wins.
        .filter(|s| s.entry.hint.is_empty() || seen_hints.insert(s.entry.hint.clone()))
        .map(|s| wl::X509svid {
            spiffe_id: s.entry.spiffe_id.clone(),
            x509_svid: s.chain.concat(),
            x509_svid_key: s.key.to_vec(),
            bundle: bundle.clone(),
            hint: s.entry.hint.clone(),
        })
        .collect();
    wl::X509svidResponse {
        svids,
        crl: vec![],
        federated_bundles: snapshot
            .federated_for(svids_in)
            .into_iter()
            .map(|b| {
                (
                    format!("spiffe://{}", b.trust_domain),
                    b.x509_authorities.concat(),
                )
            })
            .collect(),
    }
}

/// The caller's own trust domain's bundle and those its entries federate with.
fn x509_bundles_response(
    snapshot: &Snapshot,
    svids: &[&Arc<WorkloadSvid>],
) -> wl::X509BundlesResponse {
    let mut bundles = HashMap::from([(td_key(snapshot), snapshot.bundle.concat())]);
    for b in snapshot.federated_for(svids) {
        bundles.insert(
            format!("spiffe://{}", b.trust_domain),
            b.x509_authorities.concat(),
        );
    }
    wl::X509BundlesResponse {
        crl: vec![],
        bundles,
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams `build(snapshot)` now and after every cache change that alters it. `build`
/// returning `None` means the caller has no identity: the stream ends with PermissionDenied.
/// The caller's stream `slot` is given back when the stream ends (the task below owns it).
/// When `stopping` turns true (or its sender is gone), the stream ends with Unavailable.
///
/// The first message is built here, in the caller's request, and is ready when the response
/// is: a call that wants one message (most clients' first fetch) is answered without waiting
/// for the task that follows the cache to be scheduled, possibly on another thread. That task
/// sends only what changes after it.
fn watch_stream<T, F>(
    mut cache: watch::Receiver<Arc<Snapshot>>,
    mut stopping: watch::Receiver<bool>,
    slot: StreamSlot,
    build: F,
) -> ResponseStream<T>
where
    T: Clone + PartialEq + Send + 'static,
    F: Fn(&Snapshot) -> Option<T> + Send + 'static,
{
    let unavailable = || Err(Status::unavailable(SHUTTING_DOWN));
    if *stopping.borrow_and_update() {
        return Box::pin(futures::stream::once(async move { unavailable() }));
    }
    let snapshot = cache.borrow_and_update().clone();
    let Some(first) = build(&snapshot) else {
        return Box::pin(futures::stream::once(async {
            Err(Status::permission_denied(NO_IDENTITY))
        }));
    };
    let (tx, rx) = mpsc::channel(4);
    let mut last = first.clone();
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            tokio::select! {
                changed = cache.changed() => if changed.is_err() { return },
                changed = stopping.changed() => if changed.is_err() {
                    let _ = tx.send(unavailable()).await;
                    return;
                },
                () = tx.closed() => return,
            }
            if *stopping.borrow_and_update() {
                let _ = tx.send(unavailable()).await;
                return;
            }
            let snapshot = cache.borrow_and_update().clone();
            let Some(message) = build(&snapshot) else {
                let _ = tx.send(Err(Status::permission_denied(NO_IDENTITY))).await;
                return;
            };
            if message != last {
                last = message.clone();
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(futures::stream::once(async { Ok(first) }).chain(ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<wl::X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<wl::X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<wl::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<wl::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        const RPC: &str = "FetchX509SVID";
        let caller = self.admit(&request, RPC)?;
        self.identity_stream(caller, RPC, x509_svid_response).await
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<wl::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        const RPC: &str = "FetchX509Bundles";
        let caller = self.admit(&request, RPC)?;
        self.identity_stream(caller, RPC, x509_bundles_response)
            .await
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<wl::JwtsvidRequest>,
    ) -> Result<Response<wl::JwtsvidResponse>, Status> {
        let caller = self.admit(&request, "FetchJWTSVID")?;
        let selectors = self.attest(caller).await?;
        let req = request.into_inner();
        jwt::check_audience(&req.audience)?;
        let entries = {
            let snapshot = self.cache.borrow().clone();
            jwt::identities(&matching(&snapshot, &selectors), &req.spiffe_id)?
        };
        let response = jwt::fetch_svids(&self.jwt, &entries, &req.audience).await?;
        Ok(Response::new(response))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<wl::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        const RPC: &str = "FetchJWTBundles";
        let caller = self.admit(&request, RPC)?;
        self.identity_stream(caller, RPC, jwt::bundles_response)
            .await
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<wl::ValidateJwtsvidRequest>,
    ) -> Result<Response<wl::ValidateJwtsvidResponse>, Status> {
        let caller = self.admit(&request, "ValidateJWTSVID")?;
        let selectors = self.attest(caller).await?;
        let snapshot = self.cache.borrow().clone();
        // Like SPIRE, only a caller with an identity gets the bundles to validate with.
        let svids = matching(&snapshot, &selectors);
        if svids.is_empty() {
            return Err(Status::permission_denied(NO_IDENTITY));
        }
        let now = self.jwt.clock().unix_seconds();
        jwt::validate(&snapshot, &svids, request.get_ref(), now).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::StreamExt;
    use tonic::Code;

    use super::*;
    use crate::workload::limits::WorkloadLimits;

    fn snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            trust_domain: spiffe::TrustDomain::new("example.org").expect("trust domain"),
            bundle: vec![vec![1]],
            jwt_keys: Vec::new(),
            svids: Vec::new(),
            federated: BTreeMap::new(),
        })
    }

    #[tokio::test]
    async fn a_stream_ends_with_unavailable_when_the_agent_stops_and_gives_its_slot_back() {
        let (_cache, cache_rx) = watch::channel(snapshot());
        let (stop, stopping) = watch::channel(false);
        let limits = CallerLimits::new(WorkloadLimits::DEFAULT);
        let key = CallerKey::Pid(7);
        let slot = limits.open_stream(key).expect("a slot");
        let mut stream = watch_stream(cache_rx.clone(), stopping.clone(), slot, |s| {
            Some(s.bundle.len())
        });
        assert_eq!(stream.next().await.expect("a message").expect("ok"), 1);
        assert_eq!(limits.open_streams(key), 1);

        stop.send(true).expect("the stream listens");
        let end = stream
            .next()
            .await
            .expect("an end")
            .expect_err("Unavailable");
        assert_eq!(end.code(), Code::Unavailable);
        assert_eq!(end.message(), SHUTTING_DOWN);
        assert!(stream.next().await.is_none(), "nothing after the end");
        assert_eq!(limits.open_streams(key), 0, "the slot is given back");

        // A stream opened once the agent is stopping ends at once, before any message.
        let slot = limits.open_stream(key).expect("a slot");
        let mut late = watch_stream(cache_rx, stopping, slot, |s| Some(s.bundle.len()));
        let end = late.next().await.expect("an end").expect_err("Unavailable");
        assert_eq!(end.code(), Code::Unavailable);
    }
}
