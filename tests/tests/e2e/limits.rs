//! Nexus under load and at its limits, over real processes and real mTLS: a root key rotated
//! while readers and writers keep going, a caller over its request rate, and a request that
//! cannot finish in time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_api::routes::{self, Action};
use nexus_api::{Client, ClientError, ErrorCode};
use tests::secrets::{SUPERUSER_ID, SecretsStack, nexus_tls, values};
use tests::{json, stderr};

/// Builds the binaries, then starts the test's clock (the printed timings are the test's).
fn clock() -> Instant {
    tests::bin_dir();
    Instant::now()
}

/// Writes `text` as a policy file and applies it with the admin `spike`, retrying while the
/// admin is rate-limited (bounded).
async fn apply_policy(stack: &SecretsStack, name: &str, text: &str) {
    let file = stack.dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).expect("policy file");
    let file = file.display().to_string();
    spike_retrying(stack, &["policy", "apply", "--file", &file]).await;
}

/// Runs the admin `spike` until it succeeds (it may be rate-limited), for at most 20 s.
async fn spike_retrying(stack: &SecretsStack, args: &[&str]) -> String {
    let out = tests::wait_for(
        &format!("spike {args:?} to succeed"),
        Duration::from_secs(20),
        || {
            let out = stack.spike(args);
            if !out.status.success() {
                let error = stderr(&out);
                assert!(
                    error.contains("rate-limiting"),
                    "spike {args:?} failed for another reason than the rate limit: {error}"
                );
            }
            async move { out.status.success().then_some(out) }
        },
    )
    .await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// 1. Root key rotation under load
// ---------------------------------------------------------------------------------------

const SECRETS: usize = 200;
const READERS: usize = 4;
const WRITERS: usize = 3;
const ROTATIONS: usize = 3;
const LOAD_ID: &str = "spiffe://example.org/app/load";

fn load_path(i: usize) -> String {
    format!("load/s{i}")
}

fn initial_value(i: usize) -> String {
    format!("initial-{i}")
}

/// Requests that failed: how many and the first few messages.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl Failures {
    fn record(&self, what: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first.lock().expect("failures lock");
        if first.len() < 5 {
            first.push(what);
        }
    }
}

/// Reader `r`: reads every secret round and round until `done`; a value must be the initial
/// one or one its writer wrote.
async fn reader(
    r: usize,
    nexus: Client,
    done: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    failures: Arc<Failures>,
) {
    let mut i = r * 53;
    while !done.load(Ordering::SeqCst) {
        i = (i + 1) % SECRETS;
        let path = load_path(i);
        match nexus.get_secret(&path, 0).await {
            Ok(secret) => {
                let value = secret.data.get("v").cloned().unwrap_or_default();
                let writer_prefix = format!("w{}-{i}-", i % WRITERS);
                if value != initial_value(i) && !value.starts_with(&writer_prefix) {
                    failures.record(format!("read {path}: unexpected value {value:?}"));
                }
            }
            Err(error) => failures.record(format!("read {path}: {error}")),
        }
        reads.fetch_add(1, Ordering::SeqCst);
    }
}

/// Writer `w`: writes new versions of the secrets it owns (`i % WRITERS == w`) until `done`;
/// returns the last acknowledged value of each path it wrote.
async fn writer(
    w: usize,
    nexus: Client,
    done: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    failures: Arc<Failures>,
) -> BTreeMap<usize, String> {
    let owned: Vec<usize> = (0..SECRETS).filter(|i| i % WRITERS == w).collect();
    let mut acknowledged = BTreeMap::new();
    let mut n = 0usize;
    while !done.load(Ordering::SeqCst) {
        let i = owned[n % owned.len()];
        let value = format!("w{w}-{i}-{n}");
        let path = load_path(i);
        match nexus
            .put_secret(&path, values(&[("v", &value)]), None)
            .await
        {
            Ok(_) => {
                acknowledged.insert(i, value);
            }
            Err(error) => failures.record(format!("write {path}: {error}")),
        }
        writes.fetch_add(1, Ordering::SeqCst);
        n += 1;
    }
    acknowledged
}

/// Every secret holds `expected` (its last acknowledged value, or the initial one).
async fn assert_values(nexus: &Client, expected: &BTreeMap<usize, String>, when: &str) {
    for i in 0..SECRETS {
        let path = load_path(i);
        let secret = nexus
            .get_secret(&path, 0)
            .await
            .unwrap_or_else(|e| panic!("{when}: reading {path}: {e}"));
        assert_eq!(
            secret.data.get("v"),
            Some(&expected[&i]),
            "{when}: {path} must hold its last acknowledged value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_key_rotations_under_concurrent_readers_and_writers_fail_no_request() {
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    // The point here is rotation, not the rate limit: in-process clients may exceed the
    // default per-caller rate, and a 429 would be counted as a failed request.
    stack.nexus_config = "rate_limit = 0\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    apply_policy(
        &stack,
        "load",
        "name: load\nspiffeidPattern: ^spiffe://example\\.org/app/load$\npathPattern: ^load/.*$\npermissions: [read, write]\n",
    )
    .await;
    let source = stack.identity_as(LOAD_ID).await;

    // 200 secrets, written eight at a time.
    let setup = stack.client(&source);
    for chunk in (0..SECRETS).collect::<Vec<_>>().chunks(8) {
        let puts = chunk.iter().map(|&i| {
            let setup = &setup;
            async move {
                setup
                    .put_secret(&load_path(i), values(&[("v", &initial_value(i))]), None)
                    .await
                    .unwrap_or_else(|e| panic!("initial put of {}: {e}", load_path(i)))
            }
        });
        futures::future::join_all(puts).await;
    }
    println!("{SECRETS} secrets written after {:?}", started.elapsed());

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Failures::default());
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            tokio::spawn(reader(
                r,
                stack.client(&source),
                done.clone(),
                reads.clone(),
                failures.clone(),
            ))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                stack.client(&source),
                done.clone(),
                writes.clone(),
                failures.clone(),
            ))
        })
        .collect();
    let counts = || (reads.load(Ordering::SeqCst), writes.load(Ordering::SeqCst));

    for round in 1..=ROTATIONS {
        // The load is running before each rotation starts...
        let (r0, w0) = counts();
        tests::wait_for(
            "readers and writers to make progress",
            Duration::from_secs(20),
            || {
                let (r, w) = counts();
                async move { (r >= r0 + 20 && w >= w0 + 5).then_some(()) }
            },
        )
        .await;
        let (r_before, w_before) = counts();
        let out = stack
            .spike_async(&["operator", "rotate", "-f", "json"])
            .await;
        let (r_after, w_after) = counts();
        assert!(
            out.status.success(),
            "rotation {round} failed: {}\n{}",
            stderr(&out),
            stack.nexus_log()
        );
        let rotated = json(&String::from_utf8_lossy(&out.stdout));
        // Every secret has at least one version, plus the load policy.
        let rewrapped = rotated["rewrapped"].as_u64().unwrap_or_default();
        assert!(
            rewrapped > SECRETS as u64,
            "rotation {round} re-wrapped {rewrapped} data keys, fewer than the {SECRETS} secrets and the policy: {rotated}"
        );
        // ...and during it.
        println!(
            "rotation {round}: {rewrapped} data keys re-wrapped in {} ms; {} reads and {} writes completed meanwhile",
            rotated["durationMs"],
            r_after - r_before,
            w_after - w_before
        );
        assert!(
            r_after > r_before && w_after > w_before,
            "rotation {round}: reads and writes went on while it ran"
        );
        // The keepers get the new key before the next rotation.
        tests::wait_for(
            "the rotation to finish (every keeper re-seeded)",
            Duration::from_secs(30),
            || {
                let finished = stack
                    .nexus_log()
                    .matches("root key rotation finished")
                    .count();
                async move { (finished >= round).then_some(()) }
            },
        )
        .await;
    }

    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("reader task");
    }
    let mut expected: BTreeMap<usize, String> =
        (0..SECRETS).map(|i| (i, initial_value(i))).collect();
    for writer in writers {
        expected.extend(writer.await.expect("writer task"));
    }
    let (total_reads, total_writes) = counts();
    let failed = failures.count.load(Ordering::SeqCst);
    let first = failures.first.lock().expect("failures lock").clone();
    println!(
        "{total_reads} reads and {total_writes} writes across {ROTATIONS} rotations, {failed} failed, after {:?}",
        started.elapsed()
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the rotations; first: {first:#?}\nnexus log:\n{}",
        total_reads + total_writes,
        stack.nexus_log()
    );
    assert!(
        expected.values().filter(|v| v.starts_with('w')).count() >= WRITERS,
        "every writer had writes acknowledged"
    );

    // Every acknowledged write reads back with its last value...
    assert_values(&stack.client(&source), &expected, "after the rotations").await;
    // ...also after a restart, which unseals from the keepers alone: they hold the last key.
    stack.restart_nexus().await;
    assert!(
        !stack.nexus_log().contains("rotation record"),
        "the last rotation was finished before the restart"
    );
    assert_values(&stack.client(&source), &expected, "after a restart").await;
    println!("rotation test done after {:?}", started.elapsed());
}

/// How many times Nexus's log says it re-seeded the keeper on `port`.
fn reseeded(stack: &SecretsStack, port: u16) -> usize {
    let url = format!("127.0.0.1:{port}");
    stack
        .nexus_log()
        .lines()
        .filter(|l| l.contains("re-seeded it") && l.contains(&url))
        .count()
}

/// A second rotation commits while the keepers are still being handed the first one's key:
/// that hand-over completing must not end the second rotation (delete its record) before
/// the keepers hold the second key, or a crash at that point leaves keepers whose key cannot
/// open the datastore.
///
/// Keeper 3 is stopped so the hand-over of key 2 waits on it; rotation 2 commits meanwhile;
/// keepers 1 and 2 are stopped (holding key 2) and keeper 3 resumes, taking key 2 and then
/// key 3; Nexus is killed there. Keepers 1 and 2 alone give key 2, which must still lead to
/// key 3 through the rotation record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_committed_while_keepers_get_the_previous_key_survives_kill_9() {
    use nix::sys::signal::Signal;
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let nexus = stack.client(&source);
    for i in 0..5 {
        nexus
            .put_secret(
                &format!("r/{i}"),
                values(&[("v", &format!("value-{i}"))]),
                None,
            )
            .await
            .expect("put");
    }
    let signal = |stack: &SecretsStack, i: usize, signal| {
        let pid = stack.keepers[i].as_ref().expect("keeper").pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
    };
    let [k1, k2, k3] = [0, 1, 2].map(|i| stack.keeper_ports[i]);
    let before = [k1, k2, k3].map(|port| reseeded(&stack, port));

    // Rotation 1: keepers 1 and 2 get key 2; the hand-over waits on the stopped keeper 3
    // (for up to the keeper call timeout, 3 s).
    signal(&stack, 2, Signal::SIGSTOP);
    nexus.rotate().await.expect("rotation 1");
    tests::wait_for(
        "keepers 1 and 2 to get key 2",
        Duration::from_secs(10),
        || {
            let done = reseeded(&stack, k1) > before[0] && reseeded(&stack, k2) > before[1];
            async move { done.then_some(()) }
        },
    )
    .await;
    // Rotation 2 commits while that hand-over still waits on keeper 3.
    nexus.rotate().await.expect("rotation 2");
    signal(&stack, 0, Signal::SIGSTOP);
    signal(&stack, 1, Signal::SIGSTOP);
    signal(&stack, 2, Signal::SIGCONT);
    // Keeper 3 takes key 2 (the hand-over now reaches every keeper), then key 3 in the next
    // round, which waits on the stopped keepers 1 and 2: kill Nexus there.
    tests::wait_for(
        "keeper 3 to get key 2, then key 3",
        Duration::from_secs(10),
        || {
            let done = reseeded(&stack, k3) >= before[2] + 2;
            async move { done.then_some(()) }
        },
    )
    .await;
    stack.kill_nexus();
    signal(&stack, 0, Signal::SIGCONT);
    signal(&stack, 1, Signal::SIGCONT);

    // Keepers 1 and 2 rebuild key 2; only rotation 2's record leads from it to key 3.
    stack.start_nexus().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = stack.spike(&["status", "-f", "json"]);
        if status.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Nexus did not unseal after the interrupted rotations: {}\nnexus log:\n{}",
            String::from_utf8_lossy(&status.stdout),
            stack.nexus_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stack
            .nexus_log()
            .contains("recovered the rotated key from the rotation record"),
        "{}",
        stack.nexus_log()
    );
    let nexus = stack.client(&source);
    for i in 0..5 {
        let secret = nexus.get_secret(&format!("r/{i}"), 0).await.expect("read");
        assert_eq!(secret.data, values(&[("v", &format!("value-{i}"))]));
    }
    println!(
        "interrupted rotations test done after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 2. Per-caller rate limit
// ---------------------------------------------------------------------------------------

const FLOOD_ID: &str = "spiffe://example.org/app/flood";
const OTHER_ID: &str = "spiffe://example.org/app/other";
const RATE: u32 = 2;
const BURST: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_gets_429_with_retry_after_and_others_are_served() {
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    stack.nexus_config = format!("rate_limit = {RATE}\nrate_limit_burst = {BURST}\n");
    stack.start_nexus().await;
    stack.wait_ready().await;
    // The admin is rate-limited too: its set-up calls retry.
    spike_retrying(&stack, &["secret", "put", "limits/key", "v=limited-value"]).await;
    apply_policy(
        &stack,
        "limits",
        "name: limits\nspiffeidPattern: ^spiffe://example\\.org/app/(flood|other)$\npathPattern: ^limits/.*$\npermissions: [read]\n",
    )
    .await;
    let other = stack.workload("other-app", OTHER_ID);
    let source = stack.identity_as(FLOOD_ID).await;
    let tls = nexus_tls(&source);
    let get = Action::Get.url(routes::SECRETS);
    let body = serde_json::json!({ "path": "limits/key" }).to_string();

    // A burst of 20 requests at once from one caller: its burst of 3 is served, then a
    // request every 1/RATE s; the rest are refused with 429 and Retry-After.
    const BURST_REQUESTS: usize = 20;
    let burst_started = Instant::now();
    let answers = futures::future::join_all(
        (0..BURST_REQUESTS).map(|_| tests::mtls::post(&tls, stack.nexus_port, &get, &body)),
    )
    .await;
    let burst_took = burst_started.elapsed();
    let mut served = 0u64;
    let mut limited = 0u64;
    for answer in answers {
        let answer = answer.expect("every request of the burst is answered");
        match answer.status {
            200 => {
                assert_eq!(answer.json()["data"]["v"], "limited-value");
                served += 1;
            }
            429 => {
                let error = answer.json();
                assert_eq!(error["err"], "api_too_many_requests", "{}", answer.text());
                assert!(
                    error["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(FLOOD_ID),
                    "the refusal names the caller: {}",
                    answer.text()
                );
                // At 2 requests per second the next one is allowed within 0.5 s, rounded up.
                assert_eq!(
                    answer.header("retry-after"),
                    Some("1"),
                    "Retry-After of a 429: {:?}",
                    answer.headers
                );
                limited += 1;
            }
            other => panic!("unexpected answer {other}: {}", answer.text()),
        }
    }
    println!("burst of {BURST_REQUESTS} in {burst_took:?}: {served} served, {limited} limited");
    assert!(served >= 1, "the caller's burst allowance is served");
    let allowed = u64::from(BURST) + (burst_took.as_secs_f64() * f64::from(RATE)).ceil() as u64;
    assert!(
        served <= allowed,
        "{served} served in {burst_took:?}, more than the burst of {BURST} plus {RATE}/s allow"
    );
    assert!(limited >= 1, "some requests of the burst were limited");

    // While this caller keeps flooding (and keeps being refused), another caller is served:
    // limits are per SPIFFE ID.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = tokio::spawn({
        let nexus = stack.client(&source);
        let flooding = flooding.clone();
        async move {
            let (mut served, mut limited) = (0u64, 0u64);
            while flooding.load(Ordering::SeqCst) {
                match nexus.get_secret("limits/key", 0).await {
                    Ok(_) => served += 1,
                    Err(ClientError::Api {
                        status: 429,
                        code: ErrorCode::TooManyRequests,
                        ..
                    }) => limited += 1,
                    Err(error) => panic!("flood request failed otherwise: {error}"),
                }
                // Pacing only, so the flood leaves the two cores some room; no timing is
                // asserted on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (served, limited)
        }
    });
    for _ in 0..BURST {
        let out = tokio::task::block_in_place(|| {
            stack.run(&other, &["secret", "get", "limits/key", "v"], None)
        });
        assert!(
            out.status.success(),
            "another caller is refused while the first floods: {}",
            stderr(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "limited-value");
    }
    flooding.store(false, Ordering::SeqCst);
    let (flood_served, flood_limited) = flood.await.expect("flood task");
    println!("meanwhile the flood got {flood_served} served, {flood_limited} limited");
    assert!(
        flood_limited > 0,
        "the flooding caller was being limited while the other was served"
    );

    // The server still serves the flooding caller once it slows down.
    let recovered = tests::wait_for(
        "the flooding caller to be served again",
        Duration::from_secs(10),
        || async {
            tests::mtls::post(&tls, stack.nexus_port, &get, &body)
                .await
                .ok()
                .filter(|a| a.status == 200)
        },
    )
    .await;
    assert_eq!(recovered.json()["data"]["v"], "limited-value");

    // Every refusal was audited with its status.
    let audit = std::fs::read_to_string(stack.audit_log()).expect("audit log");
    let audited_429 = audit
        .lines()
        .map(json)
        .filter(|l| l["caller"] == FLOOD_ID && l["status"] == 429)
        .count() as u64;
    assert!(
        audited_429 >= limited + flood_limited,
        "{audited_429} audited 429s for {} observed",
        limited + flood_limited
    );
    assert!(
        !audit
            .lines()
            .map(json)
            .any(|l| l["caller"] == OTHER_ID && l["status"] == 429),
        "the other caller was never limited"
    );
    println!("rate limit test done after {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 3. Request deadline
// ---------------------------------------------------------------------------------------

/// Opens Nexus's SQLite database and takes its write lock (`BEGIN IMMEDIATE`).
async fn lock_database(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("taking the database's write lock");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_blocked_past_the_request_timeout_gets_503_and_stores_nothing() {
    let started = clock();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    stack.nexus_config = "request_timeout = \"1s\"\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let nexus = stack.client(&source);
    assert_eq!(
        nexus
            .put_secret("t/key", values(&[("v", "before")]), None)
            .await
            .expect("first put"),
        1
    );

    // Nexus's default database: `nexus.db` in its data directory.
    let db = dir.path().join("nexus-data").join("nexus.db");
    let mut lock = lock_database(&db).await;

    let put_started = Instant::now();
    let refused = nexus
        .put_secret("t/key", values(&[("v", "second")]), None)
        .await
        .expect_err("a put while another connection holds the write lock");
    let took = put_started.elapsed();
    println!("the blocked put was answered after {took:?}: {refused}");
    match &refused {
        ClientError::Api { status, code, .. } => {
            assert_eq!(*status, 503, "{refused}");
            assert_eq!(*code, ErrorCode::Timeout, "{refused}");
        }
        other => panic!("expected 503 api_timeout, got {other}"),
    }
    assert!(
        took >= Duration::from_secs(1),
        "answered before the 1 s deadline ({took:?})"
    );
    // Reads are not blocked by the writer (WAL).
    let during = nexus
        .get_secret("t/key", 0)
        .await
        .expect("a read while the write lock is held");
    assert_eq!(during.data.get("v").map(String::as_str), Some("before"));
    assert_eq!(during.version, 1);

    // The lock is released: the same put now succeeds, as the next version, and the
    // timed-out attempt left nothing behind.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("releasing the write lock");
    drop(lock);
    let version = nexus
        .put_secret("t/key", values(&[("v", "second")]), None)
        .await
        .expect("the same put once the lock is released");
    assert_eq!(version, 2, "the timed-out put stored no version");
    let meta = nexus.secret_metadata("t/key").await.expect("metadata");
    assert_eq!(
        meta.versions.keys().copied().collect::<Vec<_>>(),
        vec![1, 2],
        "exactly the two acknowledged versions"
    );
    assert_eq!(meta.metadata.current_version, 2);
    for (version, value) in [(1, "before"), (2, "second")] {
        let secret = nexus.get_secret("t/key", version).await.expect("read");
        assert_eq!(secret.data, values(&[("v", value)]), "version {version}");
    }
    // And the datastore keeps working for writes after the timeout.
    assert_eq!(
        nexus
            .put_secret("t/other", values(&[("v", "after")]), None)
            .await
            .expect("another put"),
        1
    );

    // The audit log has the 503 of the timed-out request, with what the handler had
    // understood before the deadline cut it off: a put of t/key, allowed.
    let audit = std::fs::read_to_string(stack.audit_log()).expect("audit log");
    let timed_out: Vec<serde_json::Value> = audit
        .lines()
        .map(json)
        .filter(|l| l["status"] == 503)
        .collect();
    assert_eq!(timed_out.len(), 1, "one 503 audited: {timed_out:?}");
    assert_eq!(timed_out[0]["caller"], SUPERUSER_ID);
    assert_eq!(timed_out[0]["route"], routes::SECRETS);
    assert_eq!(timed_out[0]["action"], "put", "{timed_out:?}");
    assert_eq!(timed_out[0]["path"], "t/key", "{timed_out:?}");
    assert_eq!(timed_out[0]["decision"], "allow", "{timed_out:?}");
    let puts = audit
        .lines()
        .map(json)
        .filter(|l| l["action"] == "put" && l["path"] == "t/key" && l["status"] == 200)
        .count();
    assert_eq!(puts, 2, "the two acknowledged puts of t/key are audited");
    println!("timeout test done after {:?}", started.elapsed());
}
