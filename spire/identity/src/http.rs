//! HTTPS with SPIFFE mTLS for axum services (Nexus, keepers): [`serve`] runs a router over
//! [`crate::listener::tls_incoming`], and handlers take [`CallerId`] to learn who is calling.
//! The caller's ID always comes from the verified client certificate, never from the request.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use spiffe::SpiffeId;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::listener::{PeerInfo, tls_incoming};

/// The verified SPIFFE ID of the client that sent a request.
#[derive(Debug, Clone)]
pub struct CallerId(pub SpiffeId);

impl<S: Send + Sync> FromRequestParts<S> for CallerId {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<PeerInfo>()
            .and_then(|p| p.spiffe_id.clone())
            .map(CallerId)
            .ok_or((StatusCode::UNAUTHORIZED, "a client SVID is required"))
    }
}

/// Serves `app` over mTLS on `listener` until `shutdown` resolves. Each connection's
/// [`PeerInfo`] is attached to its requests for [`CallerId`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut incoming = tls_incoming(listener, tls);
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
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
