//! The SPIFFE bundle endpoint (SPIFFE Federation §5): `GET /` over TLS answers this trust
//! domain's bundle as a JWK Set with `spiffe_sequence` and `spiffe_refresh_hint`. The TLS
//! config makes the profile: the server's own SVID (`https_spiffe`) or a Web PKI certificate
//! ([`crate::serving_cert`], `https_web`). No client certificate is asked for, as the
//! standard requires; only `/` is served (404 elsewhere, 405 for other methods).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use identity::http::ServeOptions;
use spire_proto::bundle_format;
use tokio::net::TcpListener;

use crate::state::ServerState;

/// Serves the bundle endpoint on `listener` with `tls`, bounded by `options` (it faces other
/// trust domains, often the internet), until `shutdown` resolves.
pub async fn serve(
    state: Arc<ServerState>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    refresh_hint: Duration,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    identity::http::serve(
        listener,
        tls,
        router(state, refresh_hint),
        options,
        shutdown,
    )
    .await;
}

fn router(state: Arc<ServerState>, refresh_hint: Duration) -> Router {
    Router::new()
        .route("/", get(bundle))
        .with_state((state, refresh_hint))
}

async fn bundle(State((state, refresh_hint)): State<(Arc<ServerState>, Duration)>) -> Response {
    let rendered = match state.bundle().await {
        Ok(mut bundle) => {
            bundle.refresh_hint = i64::try_from(refresh_hint.as_secs()).unwrap_or(i64::MAX);
            bundle_format::to_spiffe_json(&bundle).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match rendered {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the bundle");
            (StatusCode::SERVICE_UNAVAILABLE, "bundle unavailable\n").into_response()
        }
    }
}
