//! The hostile-network suite (issue 14): every listener under the floods that jammed it, over
//! real processes on loopback, and the proof that the clients it exists for still get in.
//!
//! - Nexus: thousands of connections that never start TLS and hundreds of authenticated
//!   connections that idle after the handshake, at once; an authorised client still reads its
//!   secret. Then an 8 MiB upload sent whole still gets its 413, a forged superuser
//!   certificate shows in the metrics and the log, and a flood of half-open handshakes shows
//!   in the metrics.
//! - A keeper: a flood of silent connections and of handshakes by a workload that is not
//!   Nexus; a Nexus killed with -9 still unseals from it.
//! - The agent's Workload API socket: processes of another user hold all the connections
//!   their UID may, and HTTP/2 frames declaring 16 MiB arrive; a workload still gets its SVID,
//!   and the agent's memory stays flat.
//! - The identity server's agent API: silent connections and anonymous TLS connections that
//!   idle; a new registration entry still reaches the agent.
//!
//! Nothing here asserts a duration: the time each honest call took is printed (and recorded
//! in `docs/reliability.md`). The two tests take turns (`SERIAL`), so that on a two-core CI
//! machine one flood does not starve the other test's honest client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nexus_api::routes::{self, Action};
use spiffe::{TrustDomain, WorkloadApiClient, X509Source};
use tests::flood::{self, Flood, Hold, Target};
use tests::secrets::{SUPERUSER_ID, SecretsStack, TD};
use tests::stack::{Agent, Process, Server};
use tests::{metric, wait_for};
use tokio::io::AsyncReadExt;

/// Connections that never start TLS (or never speak, on the agent's socket).
const SILENT: usize = 3000;
/// Authenticated (or, on the identity server, anonymous) TLS connections that idle.
const IDLE: usize = 300;
/// Connections that start a TLS handshake and stall.
const HALF_OPEN: usize = 300;
/// The workload the test process is while it floods with authenticated connections.
const IDLER_ID: &str = "spiffe://example.org/app/idler";
const SECRET: &str = "kept-through-floods";
/// How long an honest call may hang before the test calls the listener jammed. Not a timing
/// assertion (the times are printed): a guard, so a jammed listener fails the test instead of
/// hanging it.
const HANG: Duration = Duration::from_secs(60);

/// One hostile test at a time. A tokio mutex: each test has a runtime of its own, and a
/// test that fails releases it like one that passes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds the binaries, raises the open-files limit, then starts the test's clock.
fn clock() -> Instant {
    tests::bin_dir();
    flood::raise_open_files_limit((SILENT + IDLE + HALF_OPEN) as u64 + 2048);
    Instant::now()
}

/// The trust domain's CA certificates (DER), from an SVID source.
fn bundle(source: &X509Source) -> Vec<Vec<u8>> {
    let td = TrustDomain::new(TD).expect("trust domain");
    source
        .try_bundle_for_trust_domain(&td)
        .expect("the trust domain's bundle")
        .authorities()
        .iter()
        .map(|ca| ca.as_bytes().to_vec())
        .collect()
}

/// A client config presenting `source`'s SVID to a server of the trust domain.
fn client_tls(source: &X509Source) -> std::sync::Arc<rustls::ClientConfig> {
    let td = TrustDomain::new(TD).expect("trust domain");
    std::sync::Arc::new(
        identity::workload::client_config(source.clone(), td, |_: &spiffe::SpiffeId| true)
            .expect("client TLS config"),
    )
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET /metrics` from `address`, without blocking the runtime.
async fn scrape(address: &str) -> String {
    tests::http_get(address, "/metrics").await
}

/// The value of `name{labels}` at `address` (0 when absent).
async fn count(address: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&scrape(address).await, name, labels).unwrap_or(0.0)
}

/// Waits (up to 30 s) until `name{labels}` at `address` reaches `at_least`; panics with the
/// metrics if it does not.
async fn wait_count(address: &str, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(address).await;
        let value = metric(&text, name, labels).unwrap_or(0.0);
        if value >= at_least {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} stayed below {at_least} at {address}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces keeper `i` with one that serves metrics (on a port it picks); their address.
async fn restart_keeper_with_metrics(stack: &mut SecretsStack, i: usize) -> String {
    stack.kill_keeper(i);
    let mut cmd = std::process::Command::new(tests::bin("keeper"));
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{}", stack.keeper_ports[i]),
        "--trust-domain",
        TD,
        "--metrics-listen",
        tests::ANY_PORT,
    ])
    .env("SPIFFE_ENDPOINT_SOCKET", stack.agent.endpoint());
    let log = stack.dir.join(format!("keeper-{i}-metrics.log"));
    let mut keeper = Process::spawn(cmd, log);
    let metrics = keeper.metrics_address().await;
    stack.keepers[i] = Some(keeper);
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_and_a_keeper_serve_their_clients_through_floods() {
    let _serial = SERIAL.lock().await;
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two keepers and a threshold of two: a restarted Nexus needs the flooded keeper.
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 2, None).await;
    let keeper_metrics = restart_keeper_with_metrics(&mut stack, 0).await;
    stack.start_nexus().await;
    stack.wait_ready().await;
    let out = stack
        .spike_async(&["secret", "put", "hostile/db", &format!("password={SECRET}")])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = stack.identity_as(IDLER_ID).await;
    let nexus = loopback(stack.nexus_port);
    let nexus_metrics = format!("127.0.0.1:{}", stack.metrics_port);
    println!("stack ready after {:?}", started.elapsed());

    refused_handshakes_show_in_metrics_and_log(&stack, &source, &nexus_metrics).await;
    nexus_serves_through_silent_and_idle_floods(&stack, &source, &nexus_metrics).await;
    an_upload_sent_whole_gets_its_413(nexus, &source).await;
    half_open_handshakes_show_in_metrics(nexus, &nexus_metrics).await;
    a_restarted_nexus_unseals_from_a_flooded_keeper(&mut stack, &source, &keeper_metrics).await;
    println!("nexus and keeper suite done after {:?}", started.elapsed());
}

/// Issue 14, item 6: a forged superuser certificate and plain HTTP are counted, and the
/// forgery is logged with the peer's address.
async fn refused_handshakes_show_in_metrics_and_log(
    stack: &SecretsStack,
    source: &X509Source,
    metrics: &str,
) {
    let nexus = loopback(stack.nexus_port);
    let forged = flood::forged_client_config(&bundle(source), SUPERUSER_ID);
    // With TLS 1.3 the client may finish its side first; the server's refusal then ends it.
    if let Ok(mut stream) = flood::tls_handshake(nexus, forged).await {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    }
    let mut plain = tokio::net::TcpStream::connect(nexus)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /v1/status HTTP/1.1\r\n\r\n")
        .await
        .expect("plain HTTP");
    let failures = "nexus_tls_handshake_failures_total";
    wait_count(metrics, failures, &[("reason", "unknown_issuer")], 1.0).await;
    wait_count(metrics, failures, &[("reason", "not_tls")], 1.0).await;
    let log = stack.nexus_log();
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake failed") && l.contains("unknown_issuer"))
        .unwrap_or_else(|| panic!("no warning for the forged certificate in:\n{log}"));
    assert!(
        line.contains("WARN") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    println!("nexus logged: {line}");
}

/// Issue 14, items 1 and 2: silent connections and authenticated idle ones at once.
async fn nexus_serves_through_silent_and_idle_floods(
    stack: &SecretsStack,
    source: &X509Source,
    metrics: &str,
) {
    let nexus = loopback(stack.nexus_port);
    let silent = Flood::start(Target::Tcp(nexus), SILENT, Hold::Silent);
    let idle = Flood::start(Target::Tcp(nexus), IDLE, Hold::IdleTls(client_tls(source)));
    silent.wait_connected(SILENT as u64).await;
    idle.wait_connected(IDLE as u64).await;
    let asked = Instant::now();
    let out = stack
        .spike_async(&["secret", "get", "hostile/db", "password"])
        .await;
    let took = asked.elapsed();
    assert!(
        out.status.success(),
        "the authorised read failed during the flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SECRET);
    println!(
        "nexus: secret read in {took:?} through {SILENT} silent and {IDLE} idle authenticated connections \
         (flood: {} silent connections made, {} idle handshakes)",
        silent.connected(),
        idle.connected()
    );
    // The silent ones were pushed out of the handshake budget; the idle workload got its
    // share of served connections and no more.
    wait_count(
        metrics,
        "nexus_tls_handshake_failures_total",
        &[("reason", "evicted")],
        1.0,
    )
    .await;
    wait_count(
        metrics,
        "nexus_connections_refused_total",
        &[("reason", "per_source")],
        1.0,
    )
    .await;
    silent.stop().await;
    idle.stop().await;
}

/// Issue 14, item 5: the 413 reaches a client that sends an 8 MiB body before reading.
async fn an_upload_sent_whole_gets_its_413(nexus: SocketAddr, source: &X509Source) {
    let mut tls = (*client_tls(source)).clone();
    tls.alpn_protocols.clear();
    let status = flood::post_whole_body(
        nexus,
        std::sync::Arc::new(tls),
        &Action::Put.url(routes::SECRETS),
        8 << 20,
    )
    .await
    .expect("an answer, not a reset");
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
}

/// Half-open handshakes are pushed out or time out, and both are counted.
async fn half_open_handshakes_show_in_metrics(nexus: SocketAddr, metrics: &str) {
    let failures = "nexus_tls_handshake_failures_total";
    let before = count(metrics, failures, &[("reason", "timeout")]).await
        + count(metrics, failures, &[("reason", "evicted")]).await;
    let half_open = Flood::start(Target::Tcp(nexus), HALF_OPEN, Hold::HalfOpenTls);
    half_open.wait_connected(HALF_OPEN as u64).await;
    let counted = wait_for(
        "half-open handshakes to be counted",
        Duration::from_secs(30),
        || async move {
            let now = count(metrics, failures, &[("reason", "timeout")]).await
                + count(metrics, failures, &[("reason", "evicted")]).await;
            (now - before >= HALF_OPEN as f64 / 2.0).then_some(now - before)
        },
    )
    .await;
    println!("nexus: {counted} half-open handshakes counted (timeout or evicted)");
    half_open.stop().await;
}

/// A keeper under a flood of silent connections and of handshakes by a workload that is not
/// Nexus still gives a restarted Nexus its shard.
async fn a_restarted_nexus_unseals_from_a_flooded_keeper(
    stack: &mut SecretsStack,
    source: &X509Source,
    metrics: &str,
) {
    let keeper = loopback(stack.keeper_ports[0]);
    let silent = Flood::start(Target::Tcp(keeper), SILENT, Hold::Silent);
    let not_nexus = Flood::start(Target::Tcp(keeper), 50, Hold::IdleTls(client_tls(source)));
    silent.wait_connected(SILENT as u64).await;
    wait_count(
        metrics,
        "keeper_tls_handshake_failures_total",
        &[("reason", "wrong_role")],
        10.0,
    )
    .await;
    stack.kill_nexus();
    let restarted = Instant::now();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let took = restarted.elapsed();
    let out = stack
        .spike_async(&["secret", "get", "hostile/db", "password"])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SECRET);
    println!(
        "keeper: a Nexus killed with -9 was ready {took:?} after its restart, its keeper under {SILENT} silent connections and {} refused handshakes",
        not_nexus.failed() + not_nexus.closed()
    );
    // Silent connections were pushed out of the keeper's handshake budget.
    wait_count(
        metrics,
        "keeper_tls_handshake_failures_total",
        &[("reason", "evicted")],
        1.0,
    )
    .await;
    silent.stop().await;
    not_nexus.stop().await;
}

const APP_ID: &str = "spiffe://example.org/app";
const NEW_ID: &str = "spiffe://example.org/app/registered-during-the-flood";
/// The user the attacking processes run as (`nobody`).
const ATTACKER_UID: u32 = 65534;
/// Attacking processes, each trying to hold this many connections.
const ATTACKERS: usize = 20;
const PER_ATTACKER: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_socket_and_the_agent_api_serve_their_clients_through_floods() {
    let _serial = SERIAL.lock().await;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs its attackers as another user (uid {ATTACKER_UID}) to show that one \
         user's connections cannot crowd out another's: run it as root, as CI does"
    );
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    // The attackers (another user) must reach the socket inside it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let mut server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-metricsAddress", tests::ANY_PORT],
    )
    .await;
    let server_metrics = server.process.metrics_address().await;
    let agent_config = dir.path().join("agent.toml");
    // Short enough that silent connections are seen closed within the test.
    std::fs::write(
        &agent_config,
        "[agent]\n[agent.limits.workload_api]\nheader_timeout = \"2s\"\n",
    )
    .expect("agent config");
    let token = server.join_token(&[]);
    let mut agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &[
            "-config",
            &agent_config.display().to_string(),
            "-metricsAddress",
            tests::ANY_PORT,
        ],
    )
    .await;
    let agent_metrics = agent.process.metrics_address().await;
    let uid = format!("unix:uid:{}", nix::unistd::geteuid());
    server.create_entry(APP_ID, &server.agent_id(&token), &[&uid], &[]);
    let svid = agent.fetch_svid().await;
    assert_eq!(svid.spiffe_id().to_string(), APP_ID);
    println!("server and agent ready after {:?}", started.elapsed());

    the_workload_api_serves_through_another_users_flood(&dir, &agent, &agent_metrics).await;
    the_agent_api_serves_through_silent_and_anonymous_floods(
        &server,
        &agent,
        &token,
        &server_metrics,
    )
    .await;
    println!("agent and server suite done after {:?}", started.elapsed());
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Issue 14, item 4: processes of another user hold every connection their UID may, and
/// oversized frames arrive; a workload of this user still gets its SVID.
async fn the_workload_api_serves_through_another_users_flood(
    dir: &tempfile::TempDir,
    agent: &Agent,
    metrics: &str,
) {
    let rss_before = rss_kib(agent.process.pid());
    let socket = agent.socket.display().to_string();
    let attackers: Vec<Process> = (0..ATTACKERS)
        .map(|i| {
            let mut command = std::process::Command::new(tests::bin("workload-flood"));
            command.args(["hold", &socket, &PER_ATTACKER.to_string()]);
            std::os::unix::process::CommandExt::uid(&mut command, ATTACKER_UID);
            Process::spawn(command, dir.path().join(format!("attacker-{i}.log")))
        })
        .collect();
    let refused = "spire_agent_connections_refused_total";
    wait_count(metrics, refused, &[("reason", "per_process")], 1.0).await;
    wait_count(metrics, refused, &[("reason", "per_source")], 1.0).await;
    // HTTP/2 frames declaring 16 MiB, 2 MiB of each sent: refused at once, nothing buffered.
    for _ in 0..20 {
        let answer = flood::oversized_frame(&agent.socket, 2 << 20)
            .await
            .expect("connect");
        assert_eq!(
            flood::goaway_error_code(&answer),
            Some(0x6),
            "GOAWAY(FRAME_SIZE_ERROR) expected, got {answer:?}"
        );
    }
    let asked = Instant::now();
    let fetch = async {
        let client = WorkloadApiClient::connect_to(agent.endpoint()).await?;
        client.fetch_x509_svid().await
    };
    let svid = tokio::time::timeout(HANG, fetch)
        .await
        .expect("the SVID never came: the flood jams the Workload API")
        .expect("an SVID during the flood");
    let took = asked.elapsed();
    assert_eq!(svid.spiffe_id().to_string(), APP_ID);
    // The silent connections are closed once their time to send a request is up.
    wait_count(
        metrics,
        "spire_agent_connections_closed_total",
        &[("listener", "workload_api"), ("reason", "header_timeout")],
        1.0,
    )
    .await;
    let rss_after = rss_kib(agent.process.pid());
    let open = count(
        metrics,
        "spire_agent_connections_open",
        &[("listener", "workload_api")],
    )
    .await;
    println!(
        "agent: SVID fetched in {took:?} while {ATTACKERS} processes of uid {ATTACKER_UID} held their \
         connections ({open} open); agent memory {rss_before} KiB before, {rss_after} KiB after \
         20 frames declaring 16 MiB"
    );
    let limits = common_net::Limits::WORKLOAD_API;
    assert!(
        open <= (limits.max_connections_per_source + 16) as f64,
        "{open} connections open: more than one user's share"
    );
    drop(attackers);
}

/// Issue 14, item 7: silent and anonymous idle connections on the agent API; a new entry
/// still reaches the agent.
async fn the_agent_api_serves_through_silent_and_anonymous_floods(
    server: &Server,
    agent: &Agent,
    token: &str,
    metrics: &str,
) {
    let source = identity::workload::x509_source(Some(&agent.endpoint()), Duration::from_secs(30))
        .await
        .expect("SVID source");
    let agent_api = loopback(server.port);
    let silent = Flood::start(Target::Tcp(agent_api), SILENT, Hold::Silent);
    let anonymous = Flood::start(
        Target::Tcp(agent_api),
        IDLE,
        Hold::IdleTls(flood::anonymous_client_config(&bundle(&source))),
    );
    silent.wait_connected(SILENT as u64).await;
    anonymous.wait_connected(IDLE as u64).await;
    let uid = format!("unix:uid:{}", nix::unistd::geteuid());
    let asked = Instant::now();
    server.create_entry(NEW_ID, &server.agent_id(token), &[&uid], &[]);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("the Workload API");
    wait_for(
        "the new entry to reach the agent during the flood",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let svids = client.fetch_all_x509_svids().await.ok()?;
                svids
                    .iter()
                    .any(|s| s.spiffe_id().to_string() == NEW_ID)
                    .then_some(())
            }
        },
    )
    .await;
    let took = asked.elapsed();
    println!(
        "server: a new entry reached the agent {took:?} after it was created, through {SILENT} silent \
         and {IDLE} anonymous idle connections (flood: {} silent connections made)",
        silent.connected()
    );
    let failures = "spire_server_tls_handshake_failures_total";
    wait_count(
        metrics,
        failures,
        &[("listener", "agent_api"), ("reason", "evicted")],
        1.0,
    )
    .await;
    // Anonymous clients of one address got their share of served connections and no more.
    wait_count(
        metrics,
        "spire_server_connections_refused_total",
        &[("listener", "agent_api"), ("reason", "per_source")],
        1.0,
    )
    .await;
    silent.stop().await;
    anonymous.stop().await;
}
