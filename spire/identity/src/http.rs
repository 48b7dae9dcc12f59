//! HTTPS with SPIFFE mTLS for axum and tonic services (Nexus, keepers, the identity server's
//! agent API and bundle endpoint): [`serve`] runs a service over
//! [`crate::listener::tls_incoming`] with `common_net`'s [`HttpServer`], so every phase of a
//! connection is bounded, and handlers take [`CallerId`] to learn who is calling. The caller's
//! ID always comes from the verified client certificate, never from the request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use common_net::body::TimedBody;
use common_net::{BoxError, HttpServer, Limits, ListenerMetrics};
use http_body::Body;
use spiffe::SpiffeId;
use tokio::net::TcpListener;

use crate::listener::{PeerInfo, tls_incoming};

/// The verified SPIFFE ID of the client that sent a request.
#[derive(Debug, Clone)]
pub struct CallerId(pub SpiffeId);

impl CallerId {
    /// The verified caller's ID among a request's extensions (set by [`serve`]), if any.
    pub fn of(extensions: &axum::http::Extensions) -> Option<&SpiffeId> {
        extensions
            .get::<PeerInfo>()
            .and_then(|p| p.spiffe_id.as_ref())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallerId {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        CallerId::of(&parts.extensions)
            .cloned()
            .map(CallerId)
            .ok_or((StatusCode::UNAUTHORIZED, "a client SVID is required"))
    }
}

/// How [`serve`] bounds a listener, where it counts what it refuses, and what it speaks.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The listener's bounds ([`Limits::TLS_API`] unless configured).
    pub limits: Limits,
    /// Its counters (refusals, failed handshakes, timeouts) and rate-limited warnings.
    pub metrics: ListenerMetrics,
    /// Only HTTP/2 (gRPC), instead of HTTP/1 and HTTP/2.
    pub http2_only: bool,
    /// How long requests in flight at shutdown get to finish
    /// ([`common_net::DRAIN_TIMEOUT`] unless configured).
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions::new(Limits::default(), ListenerMetrics::default())
    }
}

impl ServeOptions {
    /// Options with `limits`, counted in `metrics`, for HTTP/1 and HTTP/2.
    pub fn new(limits: Limits, metrics: ListenerMetrics) -> Self {
        ServeOptions {
            limits,
            metrics,
            http2_only: false,
            drain_timeout: common_net::DRAIN_TIMEOUT,
        }
    }

    /// The same with requests in flight at shutdown given `drain_timeout` to finish.
    pub fn drain_timeout(self, drain_timeout: Duration) -> Self {
        ServeOptions {
            drain_timeout,
            ..self
        }
    }

    /// The same for gRPC (tonic's routes): HTTP/2 only.
    pub fn grpc(self) -> Self {
        ServeOptions {
            http2_only: true,
            ..self
        }
    }
}

/// Serves `service` (an axum router, or tonic's routes with [`ServeOptions::grpc`]) over
/// mTLS on `listener` until `shutdown` resolves. Each request carries its connection's
/// [`PeerInfo`] for [`CallerId`].
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<http::Request<TimedBody>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let incoming = tls_incoming(listener, tls, &options.limits, options.metrics.clone());
    let mut server =
        HttpServer::new(options.limits, options.metrics).drain_timeout(options.drain_timeout);
    if options.http2_only {
        server = server.http2_only();
    }
    server.serve(incoming, service, shutdown).await;
}
