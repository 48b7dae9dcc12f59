//! The secrets plane on SQLite (identity server, agent, 3 keepers, one Nexus): reads and
//! writes against their floors, the audit line, restarts; then the policy and scale phases on
//! the same stack.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use identity::https_client::HttpsClient;
use nexus_api::Client;
use tests::secrets::{SUPERUSER_ID, SecretsStack, TD, values};

use crate::measure::{self, Stats};
use crate::{Figures, Plan, baseline, progress};

/// The workload the policy figures read as (the bench's own binary, second entry).
pub const APP_ID: &str = "spiffe://example.org/bench/app";

/// Picks the SVID with one SPIFFE ID among those the agent gives this process.
struct Pick(String);

impl spiffe::x509_source::SvidPicker for Pick {
    fn pick_svid(&self, svids: &[Arc<spiffe::X509Svid>]) -> Option<usize> {
        svids
            .iter()
            .position(|s| s.spiffe_id().to_string() == self.0)
    }
}

/// An SVID source for this process as `id` (registered on `stack`'s agent).
pub async fn source_as(stack: &SecretsStack, id: &str) -> anyhow::Result<spiffe::X509Source> {
    source_at(&stack.agent.endpoint(), id).await
}

/// An SVID source for this process as `id`, from the agent at `endpoint`.
pub async fn source_at(endpoint: &str, id: &str) -> anyhow::Result<spiffe::X509Source> {
    Ok(spiffe::X509Source::builder()
        .endpoint(endpoint)
        .picker(Pick(id.to_owned()))
        .initial_sync_timeout(Duration::from_secs(30))
        .build()
        .await?)
}

pub async fn run(
    plan: Plan,
    want: &dyn Fn(&str) -> bool,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    progress("starting identity server, agent, 3 keepers and Nexus (SQLite)...");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    // Throughput is the point here: no per-caller rate limit.
    stack.nexus_config = "rate_limit = 0\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let exe = std::env::current_exe()?;
    stack.register(&exe, SUPERUSER_ID);
    stack.register(&exe, APP_ID);
    let source = source_as(&stack, SUPERUSER_ID).await?;
    let mut nexus = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
    // Ten secrets: the store of the "few secrets" read.
    let value = "x".repeat(26);
    nexus
        .put_secret("bench/db", values(&[("password", &value)]), None)
        .await?;
    for i in 1..10 {
        nexus
            .put_secret(&format!("bench/s{i}"), values(&[("v", &value)]), None)
            .await?;
    }
    for _ in 0..50 {
        nexus.get_secret("bench/db", 0).await?;
    }
    progress("reads with 10 secrets stored...");
    let read10 = measure::time(plan.reads, |_| async {
        Ok(nexus.get_secret("bench/db", 0).await?)
    })
    .await?;
    progress(&format!("  {}", read10.line()));
    progress("reads that miss the read cache, 10 secrets stored...");
    let miss10 = reads_after_writes(plan.slow, &stack, &nexus, |i| {
        format!("bench/s{}", i % 9 + 1)
    })
    .await?;
    progress(&format!("  {}", miss10.line()));

    if want("secrets") {
        reads(plan, &stack, &source, figures).await?;
        audit(plan, dir.path(), &read10, figures).await?;
        writes(plan, dir.path(), &stack, &source, &nexus, figures).await?;
        restarts(plan, &mut stack, &source, figures).await?;
        nexus = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
    }
    if want("policies") {
        let app = source_as(&stack, APP_ID).await?;
        let app = Client::connect(app, &stack.nexus_url(), TD)?;
        crate::policies::run(plan, &nexus, &app, figures).await?;
    }
    if want("scale") {
        let few = Few {
            read: &read10,
            miss: &miss10,
        };
        scale(plan, dir.path(), &stack, &source, &nexus, few, figures).await?;
    }
    Ok(())
}

/// Rounds in which a read figure's subject and floors take turns ([`measure::time_in_turns`]).
const ROUNDS: usize = 10;
/// Kept-alive reads are cheap: the throughput figures make this many times
/// [`Plan::rate_calls`] of each kind, so that each lasts long enough to be read.
const READ_RATE_CALLS: usize = 4;
/// The body of every read: a `GetSecretRequest` for Nexus; the bare servers answer any POST
/// with a fixed body of the same size as Nexus's answer.
const READ_BODY: &[u8] = br#"{"path":"bench/db"}"#;

/// One read with `client` from the server at `url`: the same call for Nexus and for the bare
/// servers, so that the load generator's own work is the same in subject and floor.
async fn read_once(client: &HttpsClient, url: &str) -> anyhow::Result<()> {
    let uri = HttpsClient::parse_url(url)?;
    let (status, _) = client.post_json(uri, Bytes::from_static(READ_BODY)).await?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

/// Kept-alive reads (1 and 16 clients) and reads on new connections, against the bare server
/// in a process of its own (the floor of each goal: Nexus, too, answers from its own process,
/// so every request crosses between two processes' threads) and, reported beside it, in this
/// process (`*_inproc`: client and server share one runtime, and a request need not wake
/// another thread at all). Nexus and both floors take turns, [`ROUNDS`] times, each through
/// the same kind of client making the same call.
async fn reads(
    plan: Plan,
    stack: &SecretsStack,
    source: &spiffe::X509Source,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let (bare_process, port) =
        baseline::server_process(&stack.agent.endpoint(), SUPERUSER_ID).await?;
    let process_url = format!("https://127.0.0.1:{port}/v1/store/secrets?action=get");
    let port = baseline::server(source.clone()).await?;
    let inproc_url = format!("https://127.0.0.1:{port}/v1/store/secrets?action=get");
    // Kind 0 is Nexus, 1 the bare server in its own process, 2 the one in this process.
    let urls = [
        format!("{}/v1/store/secrets?action=get", stack.nexus_url()),
        process_url,
        inproc_url,
    ];
    let record = |figures: &mut Figures, name: &str, values: &[f64]| -> anyhow::Result<()> {
        figures.record(name, values[0], values[1])?;
        figures.record(&format!("{name}_inproc"), values[0], values[2])
    };
    // What the timed calls only check by status: Nexus answers this request with the secret.
    let nexus = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
    anyhow::ensure!(
        nexus
            .get_secret("bench/db", 0)
            .await?
            .data
            .contains_key("password"),
        "the read Nexus answers is not the secret's"
    );

    progress("kept-alive reads, Nexus and the bare servers in turns...");
    let client = baseline::client(source)?;
    for url in &urls {
        for _ in 0..50 {
            read_once(&client, url).await?;
        }
    }
    let stats = measure::time_in_turns(3, plan.reads, ROUNDS, |kind, _| {
        read_once(&client, &urls[kind])
    })
    .await?;
    for (stats, name) in stats.iter().zip(["nexus", "bare", "bare in process"]) {
        progress(&format!("  {name:<16} {}", stats.line()));
    }
    let means: Vec<f64> = stats.iter().map(Stats::mean_us).collect();
    record(figures, "read_keepalive_1c", &means)?;

    progress(&format!("kept-alive reads, {} clients...", plan.clients));
    let clients: Vec<HttpsClient> = (0..plan.clients)
        .map(|_| baseline::client(source))
        .collect::<Result<_, _>>()?;
    for client in &clients {
        for url in &urls {
            read_once(client, url).await?;
        }
    }
    // Beside the rates, what each server process spends per read, from its CPU time: unlike
    // the rates, not shared with the load generator on the same two cores.
    let pids = [
        Some(stack.nexus.as_ref().context("Nexus is running")?.pid()),
        Some(bare_process.id().context("the bare server's pid")?),
        None,
    ];
    let turns = measure::rate_in_turns(
        3,
        plan.clients,
        plan.rate_calls * READ_RATE_CALLS,
        ROUNDS / 2,
        |kind, c, _| read_once(&clients[c], &urls[kind]),
        |kind| pids[kind].map_or(Ok(0.0), measure::cpu_seconds),
    )
    .await?;
    let rates: Vec<f64> = turns.iter().map(|t| t.rate).collect();
    record(figures, "read_keepalive_16c", &rates)?;
    let cpu_per_read = |t: &measure::Turns| t.counted * 1e6 / t.calls as f64;
    figures.record(
        "read_cpu_16c",
        cpu_per_read(&turns[0]),
        cpu_per_read(&turns[1]),
    )?;

    progress("reads on new connections...");
    let stats = measure::time_in_turns(3, plan.slow, ROUNDS / 2, |kind, _| {
        let (client, url) = (baseline::client(source), &urls[kind]);
        async move { read_once(&client?, url).await }
    })
    .await?;
    let means: Vec<f64> = stats.iter().map(Stats::mean_us).collect();
    record(figures, "read_new_conn", &means)
}

/// One audit line against the whole read it records.
async fn audit(plan: Plan, dir: &Path, read: &Stats, figures: &mut Figures) -> anyhow::Result<()> {
    use nexus::audit::{AuditLog, AuditRecord, Decision, timestamp};
    progress("audit lines...");
    let clock = nexus::clock::Clock::system();
    let log = AuditLog::file(&dir.join("bench-audit.log"))?;
    let lines = measure::time(plan.reads, |_| {
        let (log, clock) = (&log, &clock);
        async move {
            log.write(&AuditRecord {
                time: timestamp(clock.now()),
                request_id: "6f1c9a52-3b7e-4d0a-9c1e-2f8b7a6d5e4c",
                caller: SUPERUSER_ID,
                route: "/v1/store/secrets",
                action: "get",
                path: "bench/db",
                decision: Decision::Allow,
                status: 200,
                latency_us: 100,
            })?;
            Ok(())
        }
    })
    .await?;
    figures.record("audit_line", lines.mean_us(), read.mean_us())
}

/// Durable puts, 1 and 16 clients, against raw SQLite inserts.
async fn writes(
    plan: Plan,
    dir: &Path,
    stack: &SecretsStack,
    source: &spiffe::X509Source,
    nexus: &Client,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    progress("durable writes, 1 client...");
    let value = "y".repeat(32);
    let subject = measure::time(plan.slow, |i| {
        let values = values(&[("v", &value)]);
        async move {
            Ok(nexus
                .put_secret(&format!("bench/w{i}"), values, None)
                .await?)
        }
    })
    .await?;
    let floor = baseline::sqlite_inserts(dir, plan.slow).await?;
    progress(&format!(
        "  nexus {}\n           raw   {}",
        subject.line(),
        floor.line()
    ));
    figures.record("write_1c", subject.mean_us(), floor.mean_us())?;

    progress(&format!("durable writes, {} clients...", plan.clients));
    let clients: Vec<Client> = (0..plan.clients)
        .map(|_| Client::connect(source.clone(), &stack.nexus_url(), TD))
        .collect::<Result<_, _>>()?;
    for client in &clients {
        client.get_secret("bench/db", 0).await?;
    }
    let subject = measure::rate(plan.clients, plan.rate_calls, |c, i| {
        let values = values(&[("v", &value)]);
        let client = &clients[c];
        async move { Ok(client.put_secret(&format!("tp/w{i}"), values, None).await?) }
    })
    .await?;
    let floor = baseline::sqlite_insert_rate(dir, plan.clients, plan.rate_calls).await?;
    figures.record("write_16c", subject, floor)
}

/// Nexus start to first served read (keepers up), against spawning `nexus --version`.
async fn restarts(
    plan: Plan,
    stack: &mut SecretsStack,
    source: &spiffe::X509Source,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    progress("Nexus restarts...");
    let mut restarts = Vec::new();
    let mut spawns = Vec::new();
    for _ in 0..plan.restarts {
        stack.kill_nexus();
        let start = Instant::now();
        stack.start_nexus().await;
        let client = Client::connect(source.clone(), &stack.nexus_url(), TD)?;
        let deadline = start + Duration::from_secs(60);
        while client.get_secret("bench/db", 0).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "Nexus did not serve within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        restarts.push(start.elapsed());
        let start = Instant::now();
        std::process::Command::new(tests::bin("nexus"))
            .arg("--version")
            .output()?;
        spawns.push(start.elapsed());
    }
    figures.record(
        "start_to_first_read_ms",
        Stats::new(restarts).mean_ms(),
        Stats::new(spawns).mean_ms(),
    )
}

/// Writes secrets `fill/s<i>` with 16 clients until `target` are stored (`stored` now).
async fn fill(
    plan: Plan,
    stack: &SecretsStack,
    source: &spiffe::X509Source,
    stored: usize,
    target: usize,
) -> anyhow::Result<()> {
    if stored >= target {
        return Ok(());
    }
    let clients: Vec<Client> = (0..plan.clients)
        .map(|_| Client::connect(source.clone(), &stack.nexus_url(), TD))
        .collect::<Result<_, _>>()?;
    let value = "z".repeat(32);
    let step = ((target - stored) / 10).max(1);
    let rate = measure::rate(plan.clients, target - stored, |c, i| {
        let values = values(&[("v", &value)]);
        let client = &clients[c];
        async move {
            client
                .put_secret(&format!("fill/s{}", stored + i), values, None)
                .await?;
            if i % step == 0 && i > 0 {
                progress(&format!("  {} of {target} secrets", stored + i));
            }
            Ok(())
        }
    })
    .await?;
    progress(&format!("  {target} secrets stored ({rate:.0} puts/s)"));
    Ok(())
}

/// The reads taken with ten secrets stored, the baselines of the 100,000-secret reads.
#[derive(Clone, Copy)]
struct Few<'a> {
    /// The same secret read again and again (served from the read cache).
    read: &'a Stats,
    /// Reads that miss the read cache ([`reads_after_writes`]).
    miss: &'a Stats,
}

/// `n` reads that go to the database: each follows an untimed put to another path, and
/// every write empties Nexus's read cache. Only the reads are timed, and Nexus's miss
/// counter must have grown by `n`, or the figure would not be what it says.
async fn reads_after_writes(
    n: usize,
    stack: &SecretsStack,
    nexus: &Client,
    path: impl Fn(usize) -> String,
) -> anyhow::Result<Stats> {
    let value = "m".repeat(26);
    let misses_before = read_cache_misses(stack).await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        nexus
            .put_secret("bench/miss", values(&[("v", &value)]), None)
            .await?;
        let path = path(i);
        let start = Instant::now();
        nexus.get_secret(&path, 0).await?;
        samples.push(start.elapsed());
    }
    let misses = read_cache_misses(stack).await? - misses_before;
    anyhow::ensure!(
        misses >= n as f64,
        "{n} reads after writes missed the read cache only {misses} times"
    );
    Ok(Stats::new(samples))
}

/// Nexus's `nexus_read_cache_misses_total`.
async fn read_cache_misses(stack: &SecretsStack) -> anyhow::Result<f64> {
    tests::metric(&stack.metrics().await, "nexus_read_cache_misses_total", &[])
        .context("no nexus_read_cache_misses_total in Nexus's metrics")
}

/// Rotation over `rotate_secrets` secrets, then memory, list and read with `secrets` stored.
async fn scale(
    plan: Plan,
    dir: &Path,
    stack: &SecretsStack,
    source: &spiffe::X509Source,
    nexus: &Client,
    few: Few<'_>,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let stored = nexus.list_secrets().await?.len();
    progress(&format!(
        "writing {} secrets for the rotation...",
        plan.rotate_secrets
    ));
    fill(plan, stack, source, stored, plan.rotate_secrets).await?;
    let count = nexus.list_secrets().await?.len();
    progress(&format!("root key rotation over {count} secrets..."));
    let rotation = measure::time(1, |_| async { Ok(nexus.rotate().await?) }).await?;
    let rewrite = baseline::sqlite_rewrite(dir, count).await?;
    figures.record("rotation_10k", rotation.mean_ms(), rewrite.mean_ms())?;

    progress(&format!("writing {} secrets...", plan.secrets));
    fill(plan, stack, source, count, plan.secrets).await?;
    // The fill left the kernel tens of MiB to write back; the figures below are about the
    // store's size, not about reads made while that writeback runs.
    anyhow::ensure!(
        std::process::Command::new("sync").status()?.success(),
        "sync failed"
    );
    let pid = stack.nexus.as_ref().map(|p| p.pid()).unwrap_or_default();
    let before = measure::rss_mib(pid)?;
    progress("listing every secret...");
    let listed = std::cell::Cell::new(0);
    let lists = measure::time(3, |_| async {
        listed.set(nexus.list_secrets().await?.len());
        Ok(())
    })
    .await?;
    let listed = listed.get();
    anyhow::ensure!(listed >= plan.secrets, "listed {listed} secrets");
    let after = measure::rss_mib(pid)?;
    progress(&format!(
        "  RSS {before:.1} MiB loaded, {after:.1} MiB after listing"
    ));
    figures.record("secrets_100k_rss_mib", before.max(after), 100.0)?;
    figures.record("secrets_100k_list_ms", lists.mean_ms(), 200.0)?;
    progress(&format!("reads with {listed} secrets stored..."));
    let read = measure::time(plan.reads, |_| async {
        Ok(nexus.get_secret("bench/db", 0).await?)
    })
    .await?;
    figures.record("secrets_100k_read", read.mean_us(), few.read.mean_us())?;
    progress(&format!(
        "reads that miss the read cache, {listed} secrets stored..."
    ));
    let paths = nexus.list_secrets().await?;
    // Spread over the whole store, each read a different secret.
    let miss = reads_after_writes(plan.slow, stack, nexus, |i| {
        paths[i.wrapping_mul(7919) % paths.len()].clone()
    })
    .await?;
    progress(&format!("  {}", miss.line()));
    figures.record("secrets_100k_read_miss", miss.mean_us(), few.miss.mean_us())
}
