//! `HttpServer` over real sockets: what a peer that stalls in each phase gets, what an early
//! answer looks like to a client still sending, and the Unix socket's caps per process.
//! Every wait for the server to act has a generous deadline that only a broken server hits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use common_net::tcp::tcp_incoming;
use common_net::unix::{UnixPeer, unix_incoming};
use common_net::{HttpServer, Limits, NetMetrics};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

const PATIENCE: Duration = Duration::from_secs(30);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .layer(DefaultBodyLimit::max(1024))
}

/// A plain-TCP server of `app()` within `limits`; its address and its metrics.
async fn tcp_server(limits: Limits) -> (std::net::SocketAddr, Arc<Registry>) {
    let net = NetMetrics::default();
    let mut registry = Registry::default();
    net.register(&mut registry);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let metrics = net.listener("test");
    let incoming = tcp_incoming(listener, &limits, metrics.clone());
    tokio::spawn(HttpServer::new(limits, metrics).serve(incoming, app(), std::future::pending()));
    (address, Arc::new(registry))
}

fn text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text
}

#[tokio::test]
async fn an_http2_connection_without_requests_in_progress_is_closed_after_the_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::METRICS
    };
    let (address, registry) = tcp_server(limits).await;
    let tcp = TcpStream::connect(address).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{address}/"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"ok");
    // HTTP/2 keep-alive pings alone would keep it open for ever; the idle timeout ends it.
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the server closed the idle connection")
        .expect("task")
        .expect("a graceful close (GOAWAY)");
    assert!(
        text(&registry)
            .contains("connections_closed_total{listener=\"test\",reason=\"idle_timeout\"} 1"),
        "{}",
        text(&registry)
    );
}

#[tokio::test]
async fn a_413_reaches_a_client_that_sends_its_whole_body_before_reading() {
    let (address, _) = tcp_server(Limits::TLS_API).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // As Python's urllib does: headers and 8 MiB of body in one go, no `Expect: 100-continue`,
    // then read. The server answers 413 from the headers; without lingering it would close
    // with 8 MiB unread and the kernel's reset would take the answer with it.
    let body = vec![b'x'; 8 << 20];
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    stream
        .write_all(&body)
        .await
        .expect("the whole body is taken (drained), not reset");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes after answering");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_fails_its_request() {
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        ..Limits::TLS_API
    };
    let (address, _) = tcp_server(limits).await;
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf!")
        .await
        .expect("half a body");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("an answer before the client's patience runs out")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
}

#[tokio::test]
async fn a_process_gets_its_share_of_a_unix_socket_and_handlers_see_who_it_is() {
    let dir = std::env::temp_dir().join(format!("common-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("api.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    let limits = Limits {
        max_connections_per_process: 2,
        ..Limits::ADMIN_SOCKET
    };
    let net = NetMetrics::default();
    let mut registry = Registry::default();
    net.register(&mut registry);
    let metrics = net.listener("admin");
    let app =
        Router::new().route(
            "/",
            get(|peer: axum::Extension<UnixPeer>| async move {
                format!("pid={}", peer.pid.unwrap_or(0))
            }),
        );
    let incoming = unix_incoming(listener, &limits, metrics.clone());
    tokio::spawn(HttpServer::new(limits, metrics).serve(incoming, app, std::future::pending()));

    let mut first = UnixStream::connect(&path).await.expect("first");
    let _second = UnixStream::connect(&path).await.expect("second");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut answer = vec![0u8; 4096];
    let n = first.read(&mut answer).await.expect("answer");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer
            .trim_end()
            .ends_with(&format!("pid={}", std::process::id())),
        "{answer}"
    );
    // The third connection of this process is over its cap: closed at once, not queued.
    let mut third = UnixStream::connect(&path).await.expect("third");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, third.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a third connection from one process was kept"
    );
    assert!(
        text(&registry)
            .contains("connections_refused_total{listener=\"admin\",reason=\"per_process\"} 1"),
        "{}",
        text(&registry)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends the headers of `POST /upload` with `length` bytes of body to come, and returns once
/// the server is reading that body (it answered `100 Continue`).
async fn begin_upload(address: std::net::SocketAddr, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let mut seen = Vec::new();
    while !seen.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.expect("the interim answer");
        assert_eq!(n, 1, "closed before 100 Continue");
        seen.push(byte[0]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    stream
}

#[tokio::test]
async fn at_shutdown_the_listener_closes_requests_in_flight_finish_and_stalled_ones_are_dropped_at_the_drain_timeout()
 {
    // Without the drain timeout, the stalled request would hold the server for longer than
    // the test waits.
    let limits = Limits {
        header_timeout: PATIENCE * 2,
        body_timeout: PATIENCE * 2,
        ..Limits::TLS_API
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let metrics = NetMetrics::default().listener("test");
    let incoming = tcp_incoming(listener, &limits, metrics.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        HttpServer::new(limits, metrics)
            .drain_timeout(Duration::from_millis(500))
            .serve(incoming, app(), async {
                let _ = stopped.await;
            }),
    );
    let mut finishing = begin_upload(address, 3).await;
    let mut stalled = begin_upload(address, 3).await;
    stop.send(()).expect("the server is running");

    // The listener closes at once...
    eventually(|| async {
        matches!(
            TcpStream::connect(address).await,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    // ...while the request in flight is still read and answered, then its connection closed.
    finishing.write_all(b"abc").await.expect("the body");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, finishing.read_to_end(&mut answer))
        .await
        .expect("closed after the answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("3 bytes"), "{answer}");
    // The stalled one does not hold the server beyond the drain timeout.
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("the server stops after the drain timeout")
        .expect("task");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled connection was dropped");
    assert!(
        !String::from_utf8_lossy(&rest).contains("200"),
        "a request without its body was not answered as if whole"
    );
}

/// Polls `check` until it holds, within [`PATIENCE`].
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(PATIENCE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the condition did not hold in time");
}
