//! Prometheus metrics for every service: a [`Registry`] served as text at `GET /metrics` on a
//! plain-HTTP port of its own, meant for loopback (scrapers on the host, or a sidecar), so the
//! mTLS API stays free of unauthenticated routes.
//!
//! Unauthenticated as it is, the port is bounded like every other listener
//! ([`common_net::Limits::METRICS`] by default): a few dozen connections, a few per address,
//! seconds to send a request, idle connections closed.
//!
//! The text is the OpenMetrics exposition format, which Prometheus scrapes natively.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common_net::tcp::tcp_incoming;
use common_net::{HttpServer, Limits, ListenerMetrics, NetMetrics};
use common_process::Supervisor;
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

/// Serves `GET /metrics` from `registry` on `listener` within `limits` until `shutdown`
/// resolves, counting refused and timed-out connections in `metrics`. Before each scrape,
/// `refresh` runs, for gauges that are read from elsewhere (a datastore count, say).
pub async fn serve<R, F>(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: R,
    limits: Limits,
    metrics: ListenerMetrics,
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
    let incoming = tcp_incoming(listener, &limits, metrics.clone());
    HttpServer::new(limits, metrics)
        .serve(incoming, app, shutdown)
        .await;
}

/// A metrics listen option's value: `off` (no endpoint) or `host:port` with an IP address.
/// `Err` is the reason it is neither, for the caller's config error.
pub fn parse_listen(value: &str) -> Result<Option<SocketAddr>, String> {
    match value {
        "off" => Ok(None),
        address => address
            .parse()
            .map(Some)
            .map_err(|_| format!("{address:?} is neither host:port (an IP address) nor `off`")),
    }
}

/// Binds `address` for [`serve`], logging where metrics are.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "metrics at http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

/// Binds `address` and serves `registry` there (with `net`'s listener counters and
/// `supervisor`'s task failures added) as `supervisor`'s task `metrics`, until SIGINT or
/// SIGTERM: what every service does with its metrics address. `refresh` as in [`serve`].
///
/// Exit on failure, like every listener: the server owns its bound listener, which a restart
/// could not get back; a fresh process binds it again.
pub async fn start<R, F>(
    address: SocketAddr,
    mut registry: Registry,
    refresh: R,
    limits: Limits,
    net: &NetMetrics,
    supervisor: &Supervisor,
) -> std::io::Result<()>
where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let listener = bind(address).await?;
    net.register(&mut registry);
    supervisor.register(&mut registry);
    supervisor.exit_on_failure(
        "metrics",
        serve(
            listener,
            Arc::new(registry),
            refresh,
            limits,
            net.listener("metrics"),
            common_process::shutdown_signal(),
        ),
    );
    Ok(())
}

fn scrape(registry: &Registry) -> Response {
    match encode(registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            Limits::METRICS,
            ListenerMetrics::default(),
            async {
                let _ = stopped.await;
            },
        ));
        for expected in ["test_scrapes_total 1", "test_scrapes_total 2"] {
            let answer = scrape(address).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.contains("application/openmetrics-text"), "{answer}");
            assert!(answer.contains(expected), "{answer}");
            assert!(answer.trim_end().ends_with("# EOF"), "{answer}");
        }
        let _ = stop.send(());
        server.await.expect("server stops");
    }

    /// Reads until the server closes the connection (EOF or reset), or panics after 30 s.
    async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the server kept the connection open");
    }

    #[tokio::test]
    async fn silent_clients_are_closed_and_connections_past_the_cap_are_refused() {
        let net = common_net::NetMetrics::default();
        let mut registry = Registry::with_prefix("test");
        net.register(&mut registry);
        let listener = bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limits = Limits {
            max_connections: 3,
            header_timeout: Duration::from_millis(300),
            ..Limits::METRICS
        };
        tokio::spawn(serve(
            listener,
            Arc::new(registry),
            || async {},
            limits,
            net.listener("metrics"),
            std::future::pending(),
        ));
        // Three clients that send one byte and nothing more, as in issue 14: of an HTTP/1
        // request, of the HTTP/2 preface (which leaves the protocol undecided), or nothing.
        let mut slow = Vec::new();
        for first in [&b"G"[..], b"P", b""] {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            stream.write_all(first).await.expect("one byte");
            slow.push(stream);
        }
        // A fourth is over the cap: closed at once, not queued.
        let mut refused = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        closed_by_server(&mut refused).await;
        // The slow ones are closed by the header timeout, without which they would stay.
        for stream in &mut slow {
            closed_by_server(stream).await;
        }
        let text = scrape(address).await;
        assert!(
            text.contains(
                "test_connections_refused_total{listener=\"metrics\",reason=\"capacity\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "test_connections_closed_total{listener=\"metrics\",reason=\"header_timeout\"} 3"
            ),
            "{text}"
        );
    }

    /// `GET /metrics` on a new connection; the whole answer.
    async fn scrape(address: std::net::SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        answer
    }
}
