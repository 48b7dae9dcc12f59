//! Nexus killed at random moments under concurrent writers, over real mTLS and the default
//! SQLite datastore.
//!
//! Each writer owns a few secret paths and puts new versions in turn; a put is
//! acknowledged when Nexus answers with its version number. One writer per path, so at a
//! kill at most one put per path is unanswered, and it may or may not have been stored.
//! After each restart, for every path: no acknowledged version is missing (Nexus keeps the
//! newest [`KEPT_VERSIONS`], so older ones may be pruned), each kept acknowledged version
//! holds exactly its value, and every stored version opens and is either acknowledged or
//! one of that path's unanswered puts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nexus_api::model::SealState;
use nexus_api::{Client, ErrorCode};
use rand::Rng;
use spiffe::X509Source;
use tests::secrets::{SUPERUSER_ID, SecretsStack, values};

use super::{Knobs, spread};

const WRITERS: usize = 6;
const PATHS_PER_WRITER: usize = 4;
/// Nexus keeps the newest 10 versions of a secret; older ones leave storage.
const KEPT_VERSIONS: u64 = 10;
/// Acknowledged writes each cycle waits for before it picks its kill moment.
const WRITES_BEFORE_KILL: u64 = 20;
/// The kill comes up to this long after that.
const MAX_KILL_DELAY_MS: u64 = 1000;
/// In a rotation cycle, the kill comes up to this long after the rotation was asked for:
/// under the writers' load a rotation of this suite's few hundred versions takes tens of
/// milliseconds, so some kills land before its commit, some between its commit and the
/// keepers' new shards, some after.
const MAX_ROTATION_KILL_DELAY_MS: u64 = 300;

/// Whether cycle `cycle` (from 0) kills Nexus while it rotates the root key: the second
/// cycle and every third after it.
fn rotates(cycle: usize) -> bool {
    cycle % 3 == 1
}

fn path_of(writer: usize, i: usize) -> String {
    format!("crash/w{writer}/p{i}")
}

/// What the writers were told about one path.
#[derive(Default)]
struct PathLog {
    /// Version -> value of every acknowledged put.
    acked: BTreeMap<u64, String>,
    /// Values of puts that got no answer because Nexus was killed: each may be stored.
    unanswered: BTreeSet<String>,
}

/// One put and what came of it.
struct Attempt {
    path: String,
    value: String,
    result: Result<u64, String>,
    /// Whether the kill had begun when the answer (or the error) came.
    after_kill: bool,
}

/// Puts versions of writer `w`'s paths until `stop`; values are `w<w>-<n>` from `n = first`.
/// Returns every attempt and the next `n`.
async fn writer(
    w: usize,
    nexus: Client,
    first: u64,
    flags: Arc<Flags>,
    acks: Arc<AtomicU64>,
) -> (Vec<Attempt>, u64) {
    let mut attempts = Vec::new();
    let mut n = first;
    while !flags.stop.load(Ordering::SeqCst) {
        let path = path_of(w, n as usize % PATHS_PER_WRITER);
        let value = format!("w{w}-{n}");
        let result = nexus
            .put_secret(&path, values(&[("v", &value)]), None)
            .await;
        let after_kill = flags.killed.load(Ordering::SeqCst);
        if result.is_ok() {
            acks.fetch_add(1, Ordering::SeqCst);
        } else {
            // Pacing only: Nexus is down, do not spin on its closed port.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attempts.push(Attempt {
            path,
            value,
            result: result.map_err(|e| e.to_string()),
            after_kill,
        });
        n += 1;
    }
    (attempts, n)
}

#[derive(Default)]
struct Flags {
    killed: AtomicBool,
    stop: AtomicBool,
}

/// Adds a cycle's attempts to the ledger; returns what went wrong (a put refused while
/// Nexus was up, a version acknowledged twice).
fn merge(ledger: &mut BTreeMap<String, PathLog>, attempts: Vec<Attempt>) -> Vec<String> {
    let mut problems = Vec::new();
    for attempt in attempts {
        let log = ledger.entry(attempt.path.clone()).or_default();
        match attempt.result {
            Ok(version) => {
                if let Some(earlier) = log.acked.insert(version, attempt.value.clone()) {
                    problems.push(format!(
                        "version {version} of {} acknowledged twice ({earlier:?}, then {:?}): a lost update",
                        attempt.path, attempt.value
                    ));
                }
            }
            Err(_) if attempt.after_kill => {
                log.unanswered.insert(attempt.value);
            }
            Err(error) => problems.push(format!(
                "put {} failed while Nexus was up: {error}",
                attempt.path
            )),
        }
    }
    problems
}

/// Checks one path against its log (see the module docs); returns how many versions it read.
async fn verify_path(nexus: &Client, path: &str, log: &PathLog) -> Result<usize, String> {
    let meta = match nexus.secret_metadata(path).await {
        Ok(meta) => meta,
        // Only unanswered puts, none of them stored.
        Err(e) if e.code() == Some(ErrorCode::NotFound) && log.acked.is_empty() => return Ok(0),
        Err(e) => return Err(format!("metadata of {path}: {e}")),
    };
    let stored: Vec<u64> = meta.versions.keys().copied().collect();
    let newest = stored.last().copied().unwrap_or(0);
    if meta.metadata.current_version != newest {
        return Err(format!(
            "{path}: current version {} but newest stored {newest}",
            meta.metadata.current_version
        ));
    }
    if let Some(&acked) = log.acked.keys().last()
        && acked > newest
    {
        return Err(format!(
            "{path}: acknowledged version {acked} is gone (newest stored: {newest})"
        ));
    }
    if stored.len() as u64 > KEPT_VERSIONS {
        return Err(format!(
            "{path}: {} versions stored, more than {KEPT_VERSIONS}",
            stored.len()
        ));
    }
    for (&version, value) in log.acked.range(newest.saturating_sub(KEPT_VERSIONS - 1)..) {
        if !stored.contains(&version) {
            return Err(format!(
                "{path}: acknowledged version {version} ({value:?}) is not stored"
            ));
        }
    }
    for &version in &stored {
        let secret = nexus
            .get_secret(path, version)
            .await
            .map_err(|e| format!("{path} version {version} does not read back: {e}"))?;
        let value = secret.data.get("v").cloned().unwrap_or_default();
        let fine = match log.acked.get(&version) {
            Some(acked) => *acked == value,
            None => log.unanswered.contains(&value),
        };
        if !fine || secret.data.len() != 1 {
            return Err(format!(
                "{path} version {version} holds {value:?}; acknowledged: {:?}",
                log.acked.get(&version)
            ));
        }
    }
    Ok(stored.len())
}

/// [`verify_path`] for every path, a few at a time; returns the versions read.
async fn verify(nexus: &Client, ledger: &BTreeMap<String, PathLog>) -> usize {
    let checks = ledger
        .iter()
        .map(|(path, log)| verify_path(nexus, path, log));
    let results = futures::future::join_all(checks).await;
    let problems: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        problems.is_empty(),
        "after a kill -9 of Nexus:\n{problems:#?}"
    );
    results.iter().filter_map(|r| r.as_ref().ok()).sum()
}

/// Starts Nexus and waits until it serves; returns how long that took.
async fn restart(stack: &mut SecretsStack, admin: &Client) -> Duration {
    let started = Instant::now();
    stack.start_nexus().await;
    let deadline = started + Duration::from_secs(60);
    loop {
        if matches!(admin.status().await, Ok(s) if s.state == SealState::Ready) {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "Nexus did not serve again within 60 s of its restart:\n{}",
            stack.nexus_log()
        );
        // Pacing of the poll; the time printed is measured, not asserted.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The suite's state across cycles.
struct Run {
    stack: SecretsStack,
    source: X509Source,
    ledger: BTreeMap<String, PathLog>,
    /// Each writer's next value number.
    next: [u64; WRITERS],
    restarts: Vec<Duration>,
    /// Rotations answered before the kill, and cut off by it.
    rotations: (usize, usize),
}

impl Run {
    /// Writers go; Nexus is killed `delay` later (a rotation racing the kill if `rotate`);
    /// what the writers were told goes into the ledger. Returns how many writes were
    /// acknowledged this cycle, and what became of the rotation.
    async fn load_and_kill(&mut self, rotate: bool, delay: u64) -> (u64, String) {
        let flags = Arc::new(Flags::default());
        let acks = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let nexus = self.stack.client(&self.source);
                tokio::spawn(writer(w, nexus, self.next[w], flags.clone(), acks.clone()))
            })
            .collect();
        tests::wait_for(
            "writers to be acknowledged",
            Duration::from_secs(30),
            || {
                let n = acks.load(Ordering::SeqCst);
                async move { (n >= WRITES_BEFORE_KILL).then_some(()) }
            },
        )
        .await;
        let rotation = rotate.then(|| {
            let admin = self.stack.client(&self.source);
            tokio::spawn(async move { admin.rotate().await })
        });
        // Pacing to the kill moment the seed picked; nothing is asserted on time.
        tokio::time::sleep(Duration::from_millis(delay)).await;
        flags.killed.store(true, Ordering::SeqCst);
        self.stack.kill_nexus();
        flags.stop.store(true, Ordering::SeqCst);
        let mut problems = Vec::new();
        for (w, writer) in writers.into_iter().enumerate() {
            let (attempts, n) = writer.await.expect("writer task");
            self.next[w] = n;
            problems.extend(merge(&mut self.ledger, attempts));
        }
        assert!(
            problems.is_empty(),
            "{problems:#?}\nnexus log:\n{}",
            self.stack.nexus_log()
        );
        let rotated = match rotation {
            Some(task) => match task.await.expect("rotation task") {
                Ok(rotated) => {
                    self.rotations.0 += 1;
                    format!(
                        ", rotation answered before the kill (took {} ms)",
                        rotated.duration_ms
                    )
                }
                Err(_) => {
                    self.rotations.1 += 1;
                    ", rotation cut off by the kill".to_owned()
                }
            },
            None => String::new(),
        };
        (acks.load(Ordering::SeqCst), rotated)
    }

    /// Restarts Nexus and checks every path; returns what to print.
    async fn restart_and_verify(&mut self) -> String {
        let admin = self.stack.client(&self.source);
        let took = restart(&mut self.stack, &admin).await;
        self.restarts.push(took);
        let read = verify(&admin, &self.ledger).await;
        let through_record = self
            .stack
            .nexus_log()
            .contains("recovered the rotated key from the rotation record");
        let through_record = if through_record {
            " (unsealed through the rotation record)"
        } else {
            ""
        };
        format!("serving {took:?} after restart{through_record}; {read} versions read back")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_nexus_at_random_moments() {
    tests::bin_dir();
    let knobs = Knobs::from_env("nexus crash suite");
    let mut rng = knobs.rng();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    // Writers in this process may exceed the default per-caller rate; a 429 is not what is
    // under test here.
    stack.nexus_config = "rate_limit = 0\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let mut run = Run {
        stack,
        source,
        ledger: BTreeMap::new(),
        next: [0; WRITERS],
        restarts: Vec::new(),
        rotations: (0, 0),
    };
    for cycle in 0..knobs.cycles {
        let rotate = rotates(cycle);
        let max_delay = if rotate {
            MAX_ROTATION_KILL_DELAY_MS
        } else {
            MAX_KILL_DELAY_MS
        };
        let delay = rng.random_range(0..=max_delay);
        let (acks, rotated) = run.load_and_kill(rotate, delay).await;
        let restarted = run.restart_and_verify().await;
        println!(
            "cycle {cycle}: killed {delay} ms after at least {WRITES_BEFORE_KILL} acknowledged writes ({acks} in the cycle){rotated}; {restarted}"
        );
    }

    // The last verification read every stored version of every secret after the last
    // restart; the totals are the suite's figures.
    let acked: usize = run.ledger.values().map(|l| l.acked.len()).sum();
    let unanswered: usize = run.ledger.values().map(|l| l.unanswered.len()).sum();
    println!(
        "nexus crash suite: {} cycles, {acked} acknowledged writes, {unanswered} unanswered, {} rotations answered and {} cut off by a kill; restart to serving: {}; {:?} in all",
        knobs.cycles,
        run.rotations.0,
        run.rotations.1,
        spread(&run.restarts),
        started.elapsed()
    );
    assert!(acked as u64 >= WRITES_BEFORE_KILL * knobs.cycles as u64);
}
