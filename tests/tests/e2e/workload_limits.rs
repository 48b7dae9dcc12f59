//! The agent's per-caller Workload API limits over real processes: a flood from one process
//! is answered ResourceExhausted while another process is still served, and one process
//! cannot hold more than its share of open streams.
//!
//! The misbehaving workload is a separate process (`workload-flood`), so it has its own PID,
//! which is what the agent keys its limits on; the well-behaved workload is this test process.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spiffe::WorkloadApiClient;
use tests::stack::{Agent, Process, Server};
use tests::wait_for;

const TD: &str = "example.org";
const APP_ID: &str = "spiffe://example.org/app";

/// Builds the binaries, then starts the test's clock (the printed timings are the test's).
fn clock() -> Instant {
    tests::bin_dir();
    Instant::now()
}

/// A server and an agent run with `agent_flags`, and an entry for this user's processes
/// (the test and its children alike), synced to the agent.
async fn stack(dir: &std::path::Path, agent_flags: &[&str]) -> (Server, Agent) {
    let server = Server::start(&dir.join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start_with(&server, &dir.join("agent"), Some(&token), agent_flags).await;
    let uid = nix::unistd::geteuid().as_raw();
    server.create_entry(
        APP_ID,
        &server.agent_id(&token),
        &[&format!("unix:uid:{uid}")],
        &[],
    );
    // This process's own first SVID, once the agent has synced the entry (polled no faster
    // than the agent's rate limits in these tests allow).
    let svid = wait_for(
        "the entry to reach the agent",
        Duration::from_secs(20),
        || {
            let endpoint = agent.endpoint();
            async move {
                let client = WorkloadApiClient::connect_to(&endpoint).await.ok()?;
                let svid = client.fetch_x509_svid().await.ok();
                if svid.is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                svid
            }
        },
    )
    .await;
    assert_eq!(svid.spiffe_id().to_string(), APP_ID);
    (server, agent)
}

/// `workload-flood <args>` as a child process logging to `<dir>/<name>.log`.
fn flood_process(dir: &std::path::Path, name: &str, args: &[&str]) -> Process {
    let mut command = Command::new(tests::bin("workload-flood"));
    command.args(args);
    Process::spawn(command, dir.join(format!("{name}.log")))
}

/// The last `calls ok=.. exhausted=.. other=..` line of a flood's log, as numbers.
fn flood_counts(log: &str) -> Option<(u64, u64, u64)> {
    let line = log.lines().rev().find(|l| l.starts_with("calls "))?;
    let mut numbers = line
        .split_whitespace()
        .skip(1)
        .map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse().ok()));
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

#[tokio::test]
async fn a_flooding_process_is_refused_while_another_process_is_still_served() {
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mut agent) = stack(
        dir.path(),
        &[
            "-workloadRateLimit",
            "20",
            "-workloadRateBurst",
            "20",
            "-metricsAddress",
            tests::ANY_PORT,
        ],
    )
    .await;
    let metrics_address = agent.process.metrics_address().await;
    let ready = started.elapsed();

    // One process floods: eight loops of FetchX509SVID, as fast as the agent answers.
    let endpoint = agent.endpoint();
    let mut flood = flood_process(dir.path(), "flood", &["flood", &endpoint, "60"]);
    assert_ne!(flood.pid(), std::process::id(), "the flood has its own PID");
    let message = wait_for(
        "the flooding process to be refused",
        Duration::from_secs(20),
        || {
            let log = flood.log();
            async move {
                log.lines()
                    .find_map(|l| l.strip_prefix("exhausted: ").map(str::to_owned))
            }
        },
    )
    .await;
    assert!(
        message.starts_with("rate limit exceeded for this caller; retry later"),
        "{message}"
    );
    // Wait until the flood has been refused many times over, so that it is in full swing
    // while this process calls.
    wait_for("the flood to go on", Duration::from_secs(20), || {
        let counts = flood_counts(&flood.log());
        async move { counts.filter(|(_, exhausted, _)| *exhausted >= 200) }
    })
    .await;
    let (_, exhausted_before, _) = flood_counts(&flood.log()).expect("counts");

    // This process (another PID) is served while the flood goes on: one call each, no retries.
    let asked = Instant::now();
    let client = WorkloadApiClient::connect_to(&endpoint)
        .await
        .expect("connecting to the Workload API");
    let svid = client
        .fetch_x509_svid()
        .await
        .expect("another process's SVID during the flood");
    assert_eq!(svid.spiffe_id().to_string(), APP_ID);
    let bundles = client
        .fetch_x509_bundles()
        .await
        .expect("another process's bundles during the flood");
    assert!(
        bundles
            .get(&spiffe::TrustDomain::new(TD).expect("td"))
            .is_some()
    );
    let jwt = client
        .fetch_jwt_token(&["limits-test"], None)
        .await
        .expect("another process's JWT-SVID during the flood");
    assert!(!jwt.is_empty());
    let served_in = asked.elapsed();

    // The flood was still running and still being refused after our calls were answered.
    wait_for(
        "the flood to be refused again after our calls",
        Duration::from_secs(20),
        || {
            let counts = flood_counts(&flood.log());
            async move { counts.filter(|(_, exhausted, _)| *exhausted > exhausted_before) }
        },
    )
    .await;
    assert!(flood.try_exit().is_none(), "the flood is still running");
    flood.kill();
    let (ok, exhausted, other) = flood_counts(&flood.log()).expect("counts");
    assert!(
        ok >= 1,
        "the flood's own budget was served: {}",
        flood.log()
    );
    assert!(
        exhausted > ok,
        "most of the flood was refused: {}",
        flood.log()
    );
    assert_eq!(
        other,
        0,
        "refusals are all ResourceExhausted: {}",
        flood.log()
    );

    // The refusals are counted: by the generic per-status counter and by the limit's own.
    let text = tests::http_get(&metrics_address, "/metrics").await;
    let limited = tests::metric(
        &text,
        "spire_agent_workload_api_limited_total",
        &[("rpc", "FetchX509SVID"), ("limit", "rate")],
    )
    .expect("limited counter");
    assert!(
        limited >= exhausted as f64,
        "{limited} < {exhausted}\n{text}"
    );
    let by_status = tests::metric(
        &text,
        "spire_agent_workload_api_calls_total",
        &[("rpc", "FetchX509SVID"), ("code", "ResourceExhausted")],
    )
    .expect("ResourceExhausted calls");
    assert!(by_status >= exhausted as f64, "{by_status}\n{text}");
    println!(
        "stack ready in {ready:?}; flood: {ok} served, {exhausted} refused; \
         the other process was served in {served_in:?}; total {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn open_streams_are_capped_per_process_and_given_back_when_they_end() {
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent) = stack(
        dir.path(),
        &["-workloadMaxStreams", "2", "-workloadRateLimit", "0"],
    )
    .await;
    let endpoint = agent.endpoint();
    let client = WorkloadApiClient::connect_to(&endpoint)
        .await
        .expect("connecting to the Workload API");

    // This process opens its two streams; a third is refused.
    let mut svids = client.stream_x509_svids().await.expect("first stream");
    svids.next().await.expect("a message").expect("an SVID");
    let mut bundles = client.stream_x509_bundles().await.expect("second stream");
    bundles.next().await.expect("a message").expect("bundles");
    let refused = match client.stream_x509_svids().await {
        Ok(_) => panic!("a third stream of this process was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("resource_exhausted")
            && refused.contains("too many open streams for this caller (limit 2)"),
        "{refused}"
    );

    // Another process has its own two, whatever this one holds; its third is refused.
    let mut other = flood_process(dir.path(), "streams", &["streams", &endpoint, "3"]);
    other.wait_exit(Duration::from_secs(20)).await;
    let log = other.log();
    assert!(
        log.contains("opened 1\nopened 2\nexhausted: too many open streams"),
        "{log}"
    );

    // Ending a stream gives its slot back (the agent notices the stream is gone, then frees
    // the slot: polled, bounded).
    drop(svids);
    let mut again = wait_for("a freed stream slot", Duration::from_secs(10), || {
        let client = client.clone();
        async move { client.stream_x509_svids().await.ok() }
    })
    .await;
    again.next().await.expect("a message").expect("an SVID");
    // Still two at most.
    assert!(client.stream_x509_svids().await.is_err(), "a third stream");
    println!("streams test took {:?}", started.elapsed());
}
