//! HTTPS with SPIFFE mTLS for axum services (Nexus, keepers): [`serve`] runs a router over
//! [`crate::listener::tls_incoming`], and handlers take [`CallerId`] to learn who is calling.
//! The caller's ID always comes from the verified client certificate, never from the request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use spiffe::SpiffeId;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::listener::{PeerInfo, tls_incoming_bounded};

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

/// Bounds on what clients may hold of a server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (HTTP/1), and to answer a keep-alive
    /// ping (HTTP/2), before its connection is closed.
    pub header_read_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: crate::listener::DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` over mTLS on `listener` until `shutdown` resolves. Each connection's
/// [`PeerInfo`] is attached to its requests for [`CallerId`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut incoming = tls_incoming_bounded(listener, tls, limits.max_connections);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(_)) => continue,
                None => return,
            },
            () = &mut shutdown => return,
        };
        let app = app.clone().layer(axum::Extension(stream.info().clone()));
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
