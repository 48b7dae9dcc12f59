//! The identity server killed at random moments while its CLI creates registration entries
//! and join tokens concurrently.
//!
//! An entry or token is acknowledged when the CLI exits 0 and prints it. After each
//! restart: every acknowledged entry is listed exactly as created, no entry appears that
//! was never asked for, and every acknowledged token attests an agent exactly once (two
//! attestations race with it; one wins, the other is refused). In the last cycle one of
//! the tokens attests a real `spire-agent`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;
use spire_proto::server as pb;
use tests::stack::{Agent, Server, selector_strings};

use super::{Knobs, spread};

const TD: &str = "example.org";
const PARENT: &str = "spiffe://example.org/crash/node";
const CREATORS: usize = 4;
/// Acknowledged entries and tokens each cycle waits for before it picks its kill moment.
const MADE_BEFORE_KILL: usize = 12;
/// The kill comes up to this long after that.
const MAX_KILL_DELAY_MS: u64 = 300;

/// What one CLI call made.
enum Made {
    /// An entry: its ID, as printed, and the SPIFFE ID and selector asked for.
    Entry {
        id: String,
        spiffe_id: String,
        selector: String,
    },
    /// A join token's value.
    Token(String),
}

#[derive(Default)]
struct Flags {
    killed: AtomicBool,
    stop: AtomicBool,
}

/// Runs `spire-server <args> -output json` against the admin socket `socket`, without
/// blocking the runtime.
async fn cli(socket: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(tests::bin("spire-server"))
        .args(args)
        .args(["-output", "json"])
        .arg("-socketPath")
        .arg(socket)
        .output()
        .await
        .expect("running spire-server")
}

/// Creator `k` of cycle `cycle`: entries and tokens in turn until `stop`. Returns what was
/// acknowledged, and the SPIFFE IDs of the entries asked for. A CLI call that failed while
/// the server was up is a failure of the test.
async fn creator(
    socket: Arc<PathBuf>,
    cycle: usize,
    k: usize,
    flags: Arc<Flags>,
    made: Arc<AtomicUsize>,
) -> (Vec<Made>, Vec<String>) {
    let mut acked = Vec::new();
    let mut asked = Vec::new();
    let mut n = 0;
    while !flags.stop.load(Ordering::SeqCst) {
        let spiffe_id = format!("spiffe://{TD}/crash/c{cycle}/k{k}/n{n}");
        let selector = format!("unix:uid:{}", 1000 + n);
        let entry = n % 2 == 0;
        let out = if entry {
            asked.push(spiffe_id.clone());
            let args = [
                "entry",
                "create",
                "-spiffeID",
                &spiffe_id,
                "-parentID",
                PARENT,
                "-selector",
                &selector,
            ];
            cli(&socket, &args).await
        } else {
            cli(&socket, &["token", "generate"]).await
        };
        n += 1;
        if !out.status.success() {
            assert!(
                flags.killed.load(Ordering::SeqCst),
                "spire-server CLI failed while the server was up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Pacing only: the server is down.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let json: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
        acked.push(if entry {
            let id = json["id"].as_str().expect("entry id").to_owned();
            Made::Entry {
                id,
                spiffe_id,
                selector,
            }
        } else {
            Made::Token(json["value"].as_str().expect("token value").to_owned())
        });
        made.fetch_add(1, Ordering::SeqCst);
    }
    (acked, asked)
}

/// Every entry of the server by ID: (SPIFFE ID, parent ID, selectors as `type:value`).
fn entries(server: &Server) -> BTreeMap<String, (String, String, Vec<String>)> {
    let out = server.cli_ok(&["entry", "show", "-output", "json"]);
    let json: Value = serde_json::from_str(&out).expect("entry show JSON");
    json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let selectors = selector_strings(e);
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
            (
                text("id"),
                (text("spiffe_id"), text("parent_id"), selectors),
            )
        })
        .collect()
}

/// One join-token attestation over the agent API, without a client certificate.
async fn attest(server: &Server, token: &str) -> Result<(), tonic::Status> {
    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("CSR");
    let request = pb::AttestAgentRequest {
        attestation_type: "join_token".into(),
        payload: token.as_bytes().to_vec(),
        csr: csr.der().to_vec(),
    };
    server
        .agent_api(None)
        .attest_agent(request)
        .await
        .map(|_| ())
}

/// Two attestations race with `token`: exactly one is accepted.
async fn attests_exactly_once(server: &Server, token: &str) {
    let (a, b) = tokio::join!(attest(server, token), attest(server, token));
    let refused: Vec<&tonic::Status> = [&a, &b]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert_eq!(refused.len(), 1, "token {token}: {a:?} / {b:?}");
    assert_eq!(
        refused[0].code(),
        tonic::Code::InvalidArgument,
        "{:?}",
        refused[0]
    );
    assert!(
        refused[0].message().contains("already been used"),
        "{:?}",
        refused[0]
    );
}

/// Checks what the restarted server holds against one cycle's acknowledgements.
async fn verify(server: &Server, cycle: usize, acked: &[Made], asked: &BTreeSet<String>) -> usize {
    let stored = entries(server);
    let prefix = format!("spiffe://{TD}/crash/c{cycle}/");
    for made in acked {
        if let Made::Entry {
            id,
            spiffe_id,
            selector,
        } = made
        {
            let entry = stored.get(id).unwrap_or_else(|| {
                panic!("acknowledged entry {id} ({spiffe_id}) is gone after kill -9")
            });
            assert_eq!(
                entry,
                &(spiffe_id.clone(), PARENT.to_owned(), vec![selector.clone()])
            );
        }
    }
    for (id, (spiffe_id, ..)) in &stored {
        if spiffe_id.starts_with(&prefix) {
            assert!(
                asked.contains(spiffe_id),
                "entry {id} ({spiffe_id}) was never asked for"
            );
        }
    }
    let tokens: Vec<&String> = acked
        .iter()
        .filter_map(|m| match m {
            Made::Token(t) => Some(t),
            Made::Entry { .. } => None,
        })
        .collect();
    for token in &tokens {
        attests_exactly_once(server, token).await;
    }
    tokens.len()
}

/// Creators go; the server is killed `delay` after enough acknowledgements. Returns what
/// was acknowledged and the SPIFFE IDs of every entry asked for.
async fn load_and_kill(
    server: &mut Server,
    cycle: usize,
    delay: u64,
) -> (Vec<Made>, BTreeSet<String>) {
    let flags = Arc::new(Flags::default());
    let made = Arc::new(AtomicUsize::new(0));
    let socket = Arc::new(server.socket.clone());
    let creators: Vec<_> = (0..CREATORS)
        .map(|k| {
            tokio::spawn(creator(
                socket.clone(),
                cycle,
                k,
                flags.clone(),
                made.clone(),
            ))
        })
        .collect();
    tests::wait_for(
        "entries and tokens to be acknowledged",
        Duration::from_secs(30),
        || {
            let n = made.load(Ordering::SeqCst);
            async move { (n >= MADE_BEFORE_KILL).then_some(()) }
        },
    )
    .await;
    // Pacing to the kill moment the seed picked; nothing is asserted on time.
    tokio::time::sleep(Duration::from_millis(delay)).await;
    flags.killed.store(true, Ordering::SeqCst);
    server.process.kill();
    flags.stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut asked = BTreeSet::new();
    for creator in creators {
        let (made, ids) = creator.await.expect("creator task");
        acked.extend(made);
        asked.extend(ids);
    }
    (acked, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_and_join_tokens_acknowledged_by_the_cli_survive_kill_9_of_spire_server() {
    tests::bin_dir();
    let knobs = Knobs::from_env("identity server crash suite");
    let mut rng = knobs.rng();
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let mut restarts = Vec::new();
    let (mut entries_acked, mut tokens_acked) = (0, 0);
    for cycle in 0..knobs.cycles {
        let delay = rng.random_range(0..=MAX_KILL_DELAY_MS);
        let (mut acked, asked) = load_and_kill(&mut server, cycle, delay).await;
        let made = acked.len();
        let restart = Instant::now();
        server.restart().await;
        let took = restart.elapsed();
        restarts.push(took);
        if cycle + 1 == knobs.cycles {
            real_agent_attests_once(&server, dir.path(), &mut acked).await;
        }
        let tokens = verify(&server, cycle, &acked, &asked).await;
        let entries = acked.len() - tokens;
        entries_acked += entries;
        tokens_acked += tokens;
        println!(
            "cycle {cycle}: killed {delay} ms after at least {MADE_BEFORE_KILL} acknowledgements ({made} in all); healthy {took:?} after restart; {entries} entries and {tokens} tokens checked"
        );
    }
    println!(
        "identity server crash suite: {} cycles, {entries_acked} entries and {tokens_acked} join tokens acknowledged and found after kill -9; restart to healthy: {}; {:?} in all",
        knobs.cycles,
        spread(&restarts),
        started.elapsed()
    );
}

/// Takes one acknowledged token out of `acked` and attests a real agent with it; the token
/// then attests nothing else.
async fn real_agent_attests_once(server: &Server, dir: &Path, acked: &mut Vec<Made>) {
    let i = acked
        .iter()
        .position(|m| matches!(m, Made::Token(_)))
        .expect("a token acknowledged in the last cycle");
    let Made::Token(token) = acked.remove(i) else {
        unreachable!("position found a token")
    };
    let agent = Agent::start(server, &dir.join("agent"), Some(&token)).await;
    assert!(server.agent_ids().contains(&server.agent_id(&token)));
    let again = attest(server, &token)
        .await
        .expect_err("the token was used by the agent");
    assert_eq!(again.code(), tonic::Code::InvalidArgument, "{again:?}");
    drop(agent);
}
