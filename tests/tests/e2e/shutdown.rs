//! SIGTERM drains Nexus: the listener closes at once, the request in flight is still
//! answered and audited, and the process exits 0 within its drain timeout. A listener that
//! dies is no such stop: Nexus (or the identity server) logs it, shuts down and exits 1 for
//! its service manager.
//!
//! SIGTERM ends the agent's Workload API streams at once (they never finish by themselves,
//! so waiting for them would hold every shutdown for the whole drain timeout): the client
//! sees its stream end with Unavailable, and the agent exits 0 well within a drain timeout
//! deliberately set long.
//!
//! The request in flight is one we hold open ourselves: its headers carry
//! `Expect: 100-continue`, so Nexus says `100 Continue` once a handler is reading the body,
//! and we send the body only after SIGTERM, once new connections are refused. No sleep
//! decides anything.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tests::secrets::{SUPERUSER_ID, SecretsStack, nexus_tls};
use tests::stack::{Agent, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The stack's Nexus gets this long to drain; the test allows a few seconds more to exit.
const DRAIN: Duration = Duration::from_secs(10);
const PATH: &str = "shutdown/in-flight";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_request_in_flight_refuses_new_connections_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 2, None).await;
    stack.nexus_config = format!("drain_timeout = \"{}s\"\n", DRAIN.as_secs());
    stack.start_nexus().await;
    stack.wait_ready().await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let tls = nexus_tls(&source);
    let port = stack.nexus_port;

    let body = format!(r#"{{"path":"{PATH}","values":{{"k":"v"}}}}"#);
    let mut in_flight = begin_put(&tls, port, body.len()).await;
    let nexus = stack.nexus.as_mut().expect("Nexus runs");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(nexus.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");

    tests::wait_for(
        "Nexus to refuse new connections",
        Duration::from_secs(10),
        || async move {
            match TcpStream::connect(("127.0.0.1", port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        nexus.try_exit().is_none(),
        "Nexus exited with a request in flight"
    );

    in_flight
        .write_all(body.as_bytes())
        .await
        .expect("the rest of the request");
    let mut answer = Vec::new();
    // Whether the close carries a TLS close_notify or not, the answer is all in `answer`.
    let _ = in_flight.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""version":1"#), "{answer}");

    let status = nexus.wait_exit(DRAIN + Duration::from_secs(5)).await;
    assert!(status.success(), "{status}\n{}", nexus.log());
    let log = nexus.log();
    assert!(log.contains("keys zeroized"), "{log}");

    let audit = std::fs::read_to_string(stack.audit_log()).expect("the audit log");
    let line = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .find(|line| line["path"] == PATH)
        .unwrap_or_else(|| panic!("no audit line for {PATH}:\n{audit}"));
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["caller"], SUPERUSER_ID, "{line}");
}

#[tokio::test]
async fn a_panic_in_the_api_accept_loop_stops_nexus_with_exit_status_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 2, None).await;
    // A debug build's test fault: the API's accept loop panics at its first connection.
    stack.nexus_env = vec![("SPIKE_LISTENER_FAILPOINT".into(), "api".into())];
    stack.start_nexus().await;
    TcpStream::connect(("127.0.0.1", stack.nexus_port))
        .await
        .expect("the listener accepts");

    let nexus = stack.nexus.as_mut().expect("Nexus runs");
    let status = nexus.wait_exit(DRAIN + Duration::from_secs(5)).await;
    let log = nexus.log();
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains("test failpoint reached: the api accept loop fails"),
        "{log}"
    );
    let failure = log
        .lines()
        .find(|line| line.contains("background task failed"))
        .unwrap_or_else(|| panic!("the failure was not logged:\n{log}"));
    assert!(
        failure.contains("task=\"api\"") && failure.contains("panicked"),
        "{failure}"
    );
    // Still a clean stop: the audit log flushed and the keys dropped.
    assert!(log.contains("audit log flushed"), "{log}");
    assert!(log.contains("Error: the api task failed"), "{log}");
}

#[tokio::test]
async fn a_panic_in_the_agent_api_accept_loop_stops_the_identity_server_with_exit_status_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same debug-build fault, in the identity server's agent API.
    let mut server = Server::start_with_env(
        dir.path(),
        "example.org",
        &[],
        &[("SPIKE_LISTENER_FAILPOINT", "agent_api")],
    )
    .await;
    TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("the listener accepts");

    let status = server
        .process
        .wait_exit(DRAIN + Duration::from_secs(5))
        .await;
    let log = server.process.log();
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    let failure = log
        .lines()
        .find(|line| line.contains("background task failed"))
        .unwrap_or_else(|| panic!("the failure was not logged:\n{log}"));
    assert!(
        failure.contains("task=\"agent_api\"") && failure.contains("panicked"),
        "{failure}"
    );
    assert!(log.contains("Error: the agent_api task failed"), "{log}");
    // It drained as at SIGTERM: the admin socket is gone.
    assert!(!server.socket.exists(), "{}", server.socket.display());
}

/// Sends the headers of a secret write with `length` bytes of body to come, and returns once
/// Nexus is reading that body (it answered `100 Continue`).
async fn begin_put(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    length: usize,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let head = format!(
        "POST /v1/store/secrets HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let mut seen = Vec::new();
    while !seen.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream
            .read(&mut byte)
            .await
            .expect("reading the interim answer");
        assert_eq!(
            n,
            1,
            "closed before 100 Continue: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&seen);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream
}

/// The agent's drain timeout in the stream test: long, so that an agent that waited for its
/// streams would miss the (shorter) deadline the test gives it to exit.
const AGENT_DRAIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_agents_workload_streams_at_once_and_the_agent_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), "example.org", &[]).await;
    let token = server.join_token(&[]);
    let drain = format!("{}s", AGENT_DRAIN.as_secs());
    let mut agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &["-drainTimeout", &drain],
    )
    .await;
    let uid = nix::unistd::geteuid().as_raw();
    server.create_entry(
        "spiffe://example.org/app",
        &server.agent_id(&token),
        &[&format!("unix:uid:{uid}")],
        &[],
    );
    agent.fetch_svid().await;

    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connecting to the Workload API");
    let mut stream = client.stream_x509_svids().await.expect("a stream");
    stream
        .next()
        .await
        .expect("a first message")
        .expect("an SVID");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.process.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");

    // Both deadlines are half the drain timeout: met only if the stream did not hold it.
    let end = tokio::time::timeout(AGENT_DRAIN / 2, stream.next())
        .await
        .expect("the stream ended before the drain timeout");
    match end {
        Some(Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains("unavailable") && e.contains("the agent is shutting down"),
                "{e}"
            );
        }
        other => panic!("the stream should end with Unavailable, got {other:?}"),
    }
    let status = agent.process.wait_exit(AGENT_DRAIN / 2).await;
    assert!(status.success(), "{status}\n{}", agent.process.log());
}
