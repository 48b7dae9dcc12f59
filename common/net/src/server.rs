//! Serving HTTP/1 and HTTP/2 on admitted connections with every phase bounded.
//!
//! [`HttpServer::serve`] takes connections that a listener already admitted (a TLS listener
//! from `identity`, [`crate::unix`] or [`crate::tcp`]) and serves a tower service (an axum
//! router, tonic's routes) on each, with:
//! - hyper's own limits: HTTP/1 header read timeout (which also ends idle keep-alive
//!   connections), HTTP/2 keep-alive pings, and hyper's defaults for header sizes (16 KiB
//!   header list, 16 KiB frames) and concurrent streams (200);
//! - a watcher per connection for what hyper does not bound: the time before the first
//!   request (so a peer that sends nothing, or one byte of a preface, is closed) and the time
//!   an HTTP/2 connection stays without a request in progress ([`crate::activity`]);
//! - a deadline on each request body ([`crate::body::TimedBody`]);
//! - lingering close when the server ends a connection ([`crate::linger`]);
//! - the peer's [`Accepted::Info`] in every request's extensions, for handlers.
//!
//! A connection closed by the watcher after a request first gets a graceful shutdown (GOAWAY,
//! `Connection: close`) and `header_timeout` to finish; then it is dropped. One that never
//! made a request is closed at once.
//!
//! At shutdown the server drains: the listener is closed at once (new connections are
//! refused), every connection is asked to close after the request it is serving, and those
//! requests get the drain timeout ([`HttpServer::drain_timeout`], [`DRAIN_TIMEOUT`] by
//! default) to finish, reading their bodies and sending their answers; whatever is left
//! then is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::BoxError;
use crate::activity::{Activity, Idle};
use crate::body::{TimedBody, TrackedBody};
use crate::limits::Limits;
use crate::linger::Linger;
use crate::metrics::ListenerMetrics;

/// A connection a listener admitted: its bytes, who is at the other end, and (inside) its
/// place in the listener's budgets, given back when it is dropped.
pub trait Accepted: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// What handlers learn about the peer, from their request's extensions.
    type Info: Clone + Send + Sync + 'static;

    /// The peer.
    fn info(&self) -> Self::Info;
}

/// How long requests in flight at shutdown get to finish, unless configured: long enough
/// for an ordinary request, short enough for a service manager's stop timeout (systemd's is
/// 90 s, Kubernetes's grace period 30 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP on admitted connections within [`Limits`].
pub struct HttpServer {
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    metrics: ListenerMetrics,
    drain_timeout: Duration,
}

impl HttpServer {
    /// A server for HTTP/1 and HTTP/2 (told apart by the HTTP/2 preface).
    pub fn new(limits: Limits, metrics: ListenerMetrics) -> Self {
        HttpServer {
            builder: Arc::new(builder(&limits, false)),
            limits,
            metrics,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }

    /// How long requests in flight at shutdown get to finish ([`DRAIN_TIMEOUT`] unless
    /// set).
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// Only HTTP/2 (gRPC): anything else is refused.
    pub fn http2_only(mut self) -> Self {
        self.builder = Arc::new(builder(&self.limits, true));
        self
    }

    /// Serves each connection from `incoming` with a clone of `service` until `shutdown`
    /// resolves (or `incoming` ends); then closes the listener, asks every connection to
    /// close once its request is answered, and waits at most the drain timeout for them.
    pub async fn serve<I, C, S, B>(
        self,
        incoming: I,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) where
        I: Stream<Item = C>,
        C: Accepted,
        S: tower::Service<Request<TimedBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (stop, stopped) = watch::channel(false);
        // Boxed, not pinned on the stack, so that dropping it below closes the listener.
        let mut incoming = Box::pin(incoming);
        tokio::pin!(shutdown);
        loop {
            let conn = tokio::select! {
                next = incoming.next() => match next {
                    Some(conn) => conn,
                    None => break,
                },
                () = &mut shutdown => break,
            };
            tokio::spawn(serve_connection(
                conn,
                service.clone(),
                self.builder.clone(),
                self.limits,
                self.metrics.clone(),
                Stop {
                    stopped: stopped.clone(),
                    drain_timeout: self.drain_timeout,
                },
            ));
        }
        drop(incoming);
        drop(stopped);
        let _ = stop.send(true);
        let listener = self.metrics.name();
        if stop.receiver_count() > 0 {
            tracing::info!(listener, drain_timeout = ?self.drain_timeout, "stopped accepting; draining requests in flight");
        }
        if tokio::time::timeout(self.drain_timeout, stop.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                listener,
                "requests still in flight after the drain timeout were dropped"
            );
        }
    }
}

fn builder(limits: &Limits, http2_only: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    if http2_only {
        builder.http2_only()
    } else {
        builder
    }
}

/// How a connection learns that the server is shutting down, and how long it then has.
struct Stop {
    stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
}

/// How a connection's serving ended.
enum Ended {
    /// hyper finished it: the client closed, or HTTP ended it (an answer sent before the
    /// request was read), or it failed.
    Served(Result<(), BoxError>),
    /// It did not finish within its grace after the server asked it to close.
    Forced,
}

async fn serve_connection<C, S, B>(
    conn: C,
    service: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    metrics: ListenerMetrics,
    mut stop: Stop,
) where
    C: Accepted,
    S: tower::Service<Request<TimedBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let info = conn.info();
    let activity = Activity::new();
    let armed = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Linger::new(
        conn,
        armed.clone(),
        limits.linger_time,
        limits.linger_bytes,
    ));
    let hyper_service = PerRequest {
        service,
        info,
        activity: activity.clone(),
        body_timeout: limits.body_timeout,
    };
    let connection = builder.serve_connection(io, hyper_service);
    tokio::pin!(connection);
    let mut closing: Option<tokio::time::Instant> = None;
    let ended = loop {
        tokio::select! {
            // The connection first: a close it can finish in one poll is not cut short.
            biased;
            result = connection.as_mut() => break Ended::Served(result),
            idle = activity.idle(limits.header_timeout, limits.idle_timeout), if closing.is_none() => {
                metrics.closed(idle.reason());
                connection.as_mut().graceful_shutdown();
                // A peer that never made a request has nothing to finish: if the close (a
                // GOAWAY) does not complete at the next poll, the connection is dropped.
                let grace = match idle {
                    Idle::NoRequest => Duration::ZERO,
                    Idle::BetweenRequests => limits.header_timeout,
                };
                closing = Some(tokio::time::Instant::now() + grace);
            }
            _ = stop.stopped.wait_for(|stop| *stop), if closing.is_none() => {
                // HTTP/1: closed once the request in progress is answered (at once if
                // none is); HTTP/2: GOAWAY, streams in progress go on.
                connection.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + stop.drain_timeout);
            }
            () = sleep_until(closing), if closing.is_some() => break Ended::Forced,
        }
    };
    match ended {
        // hyper ended it on its own: the client may still be sending what was not read.
        Ended::Served(Ok(())) if closing.is_none() => armed.store(true, Ordering::Release),
        Ended::Served(Ok(())) => {}
        Ended::Served(Err(error)) => {
            // A header timeout the watcher already counted (and acted on) is not counted twice.
            if is_header_timeout(&error) && closing.is_none() {
                metrics.closed("header_timeout");
            } else {
                tracing::debug!(listener = metrics.name(), %error, "connection ended with an error");
            }
        }
        Ended::Forced => tracing::debug!(
            listener = metrics.name(),
            "connection dropped: it did not close in time"
        ),
    }
}

/// Wraps each request of a connection: counts it in progress until its response body ends,
/// gives its body a deadline and its extensions the peer's info.
struct PerRequest<S, T> {
    service: S,
    info: T,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<TrackedBody<B>>, BoxError>> + Send>>;

impl<S, T, B> hyper::service::Service<Request<Incoming>> for PerRequest<S, T>
where
    S: tower::Service<Request<TimedBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    T: Clone + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = BoxError;
    type Future = ResponseFuture<B>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let mut request = request.map(|body| TimedBody::new(body, self.body_timeout));
        request.extensions_mut().insert(self.info.clone());
        let call = self.service.clone().oneshot(request);
        Box::pin(async move {
            match call.await {
                Ok(response) => Ok(response.map(|body| TrackedBody::new(body, in_flight))),
                Err(error) => Err(error.into()),
            }
        })
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn is_header_timeout(error: &BoxError) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}
