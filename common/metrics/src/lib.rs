//! Prometheus metrics for every service: a [`Registry`] served as text at `GET /metrics` on a
//! plain-HTTP port of its own, meant for loopback (scrapers on the host, or a sidecar), so the
//! mTLS API stays free of unauthenticated routes.
//!
//! The text is the OpenMetrics exposition format, which Prometheus scrapes natively.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The Content-Type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry's metrics as text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// Serves `GET /metrics` from `registry` on `listener` until `shutdown` resolves. Before each
/// scrape, `refresh` runs, for gauges that are read from elsewhere (a datastore count, say).
pub async fn serve<R, F>(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: R,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            let refresh = refresh.clone();
            async move {
                refresh().await;
                scrape(&registry)
            }
        }),
    );
    serve_router(listener, app, shutdown).await;
}

/// Serves any plain-HTTP `app` on `listener` as the metrics endpoint is served (the same
/// limits), until `shutdown` resolves. For other loopback or behind-a-proxy endpoints, such as
/// the identity server's OIDC discovery in plain-HTTP mode.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "HTTP endpoint stopped");
    }
}

/// Binds `address` for [`serve`], logging where metrics are.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "metrics at http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

fn scrape(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn serves_the_registry_as_text_and_refreshes_first() {
        let mut registry = Registry::default();
        let scrapes = Counter::<u64>::default();
        registry.register("test_scrapes", "Scrapes seen", scrapes.clone());
        let listener = bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(registry),
            move || {
                let scrapes = scrapes.clone();
                async move {
                    scrapes.inc();
                }
            },
            async {
                let _ = stopped.await;
            },
        ));
        for expected in ["test_scrapes_total 1", "test_scrapes_total 2"] {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("request");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.expect("answer");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.contains("application/openmetrics-text"), "{answer}");
            assert!(answer.contains(expected), "{answer}");
            assert!(answer.trim_end().ends_with("# EOF"), "{answer}");
        }
        let _ = stop.send(());
        server.await.expect("server stops");
    }
}
