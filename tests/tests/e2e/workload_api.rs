//! Who gets which identity, and what the streams push: two agents of one server each serve
//! only the entries parented to them (or to their node alias), and `FetchX509Bundles` pushes
//! a new full-state message whenever a bundle its caller sees changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use futures::StreamExt;
use spiffe::{TrustDomain, WorkloadApiClient, WorkloadApiError, X509BundleSet};
use tests::stack::{Agent, Server};
use tests::wait_for;

const TD: &str = "example.org";
const OTHER: &str = "spiffe://other.org";

fn uid_selector() -> String {
    format!("unix:uid:{}", nix::unistd::geteuid().as_raw())
}

fn path_selector(binary: &Path) -> String {
    let binary = binary.canonicalize().expect("binary path");
    format!("unix:path:{}", binary.display())
}

/// This test binary, as the agent's unix attestor sees it.
fn me() -> PathBuf {
    std::env::current_exe().expect("test executable")
}

async fn client(agent: &Agent) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connecting to the Workload API")
}

/// The SPIFFE IDs this process is served by `agent`, waiting until there are `count`.
async fn my_ids(agent: &Agent, count: usize) -> Vec<String> {
    wait_for(
        "this process's SVIDs from the agent",
        Duration::from_secs(20),
        || async {
            let svids = client(agent).await.fetch_all_x509_svids().await.ok()?;
            let mut ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
            ids.sort();
            (ids.len() == count).then_some(ids)
        },
    )
    .await
}

/// `spire-agent api fetch x509` against `agent`: another process, another binary path.
fn cli_fetch(agent: &Agent) -> Output {
    Command::new(tests::bin("spire-agent"))
        .args(["api", "fetch", "x509", "-timeout", "5s", "-socketPath"])
        .arg(&agent.socket)
        .output()
        .expect("running spire-agent api fetch x509")
}

/// The SPIFFE IDs `spire-agent api fetch x509` prints.
fn printed_ids(stdout: &str) -> Vec<String> {
    let mut ids: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SPIFFE ID:"))
        .map(|id| id.trim().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Two agents of one server, both running as this uid: each serves only what is parented to
/// it or to its alias. Selectors tell the processes apart by binary path: this test binary
/// matches the entry under agent A; `spire-agent` (its CLI) matches those under agent B.
#[tokio::test]
async fn each_agent_serves_only_its_own_and_its_aliases_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let alias = "spiffe://example.org/node/b";
    let token_a = server.join_token(&[]);
    let token_b = server.join_token(&["-spiffeID", alias]);
    let agent_a = Agent::start(&server, &dir.path().join("a"), Some(&token_a)).await;
    let agent_b = Agent::start(&server, &dir.path().join("b"), Some(&token_b)).await;

    let uid = uid_selector();
    let cli = path_selector(&tests::bin("spire-agent"));
    let test = path_selector(&me());
    // Created in this order so that each positive check below proves its agent has synced
    // every entry the later negative check is about.
    let via_alias = "spiffe://example.org/via-alias";
    let on_a = "spiffe://example.org/on-a";
    let on_b = "spiffe://example.org/on-b";
    server.create_entry(via_alias, alias, &[&uid, &cli], &[]);
    server.create_entry(on_a, &server.agent_id(&token_a), &[&uid, &test], &[]);
    server.create_entry(on_b, &server.agent_id(&token_b), &[&uid, &cli], &[]);

    // A serves this process its entry (and has therefore synced `via_alias` too).
    assert_eq!(my_ids(&agent_a, 1).await, [on_a]);
    // B serves the CLI its own entry and the alias's (and has therefore synced `on_a`), but
    // not the alias entry itself: that names the node, not a workload.
    let served = wait_for(
        "agent B to serve the CLI both of its entries",
        Duration::from_secs(20),
        || {
            let out = cli_fetch(&agent_b);
            let ids = printed_ids(&String::from_utf8_lossy(&out.stdout));
            async move { (out.status.success() && ids.len() == 2).then_some(ids) }
        },
    )
    .await;
    assert_eq!(served, [on_b, via_alias]);

    // This process matches `on_a`'s selectors, but B is not its parent: PermissionDenied.
    let err = client(&agent_b)
        .await
        .fetch_x509_svid()
        .await
        .expect_err("agent B must not serve agent A's entry");
    assert!(matches!(err, WorkloadApiError::NoIdentityIssued), "{err:?}");
    // The CLI matches the entries under B and its alias, but A holds neither.
    let out = cli_fetch(&agent_a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "agent A must not serve B's or its alias's entries"
    );
    assert!(stderr.contains("no identity issued"), "{stderr}");
    assert!(printed_ids(&String::from_utf8_lossy(&out.stdout)).is_empty());
}

/// A self-signed CA certificate for `other.org`, as another trust domain's bundle holds.
fn foreign_ca() -> Vec<u8> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(OTHER.try_into().expect("IA5 URI"))];
    params.self_signed(&key).expect("CA").der().to_vec()
}

/// `spire-server bundle set` of `other.org` with the CAs `cas`.
fn set_foreign_bundle(server: &Server, cas: &[&[u8]]) {
    let path = server.dir.join("other.pem");
    let pem: String = cas
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect();
    std::fs::write(&path, pem).expect("writing the bundle");
    let path = path.to_str().expect("UTF-8 path");
    server.cli_ok(&["bundle", "set", "-id", OTHER, "-path", path]);
}

/// The CAs (DER) a bundle set holds for `td`, or `None` without a bundle for it.
fn cas(set: &X509BundleSet, td: &str) -> Option<Vec<Vec<u8>>> {
    let td = TrustDomain::new(td).expect("trust domain");
    set.get(&td).map(|bundle| {
        bundle
            .authorities()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect()
    })
}

/// The server's own CAs, as `bundle show` prints them.
fn stored_cas(server: &Server) -> Vec<Vec<u8>> {
    pem::parse_many(server.cli_ok(&["bundle", "show"]))
        .expect("PEM")
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

/// A server and an agent, and an entry for this process federating with other.org; waits
/// until the agent serves it.
async fn stack_with_entry(dir: &Path, server_flags: &[&str]) -> (Server, Agent) {
    let server = Server::start(&dir.join("server"), TD, server_flags).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.join("agent"), Some(&token)).await;
    server.create_entry(
        "spiffe://example.org/watcher",
        &server.agent_id(&token),
        &[&uid_selector()],
        &["-federatesWith", OTHER],
    );
    my_ids(&agent, 1).await;
    (server, agent)
}

type BundleStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<X509BundleSet, WorkloadApiError>> + Send + 'static>,
>;

async fn bundle_stream(agent: &Agent) -> BundleStream {
    Box::pin(
        client(agent)
            .await
            .stream_x509_bundles()
            .await
            .expect("FetchX509Bundles stream"),
    )
}

/// The stream's next message, which must come within `within`.
async fn next_message(stream: &mut BundleStream, within: Duration, what: &str) -> X509BundleSet {
    tokio::time::timeout(within, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no FetchX509Bundles message within {within:?}: {what}"))
        .expect("the stream stays open")
        .expect("a valid X509 bundles message")
}

/// Workload API §4: every change to a bundle the caller sees is pushed at once, each message
/// carrying the full state: a federated bundle appears, is replaced, and is redacted.
#[tokio::test]
async fn x509_bundle_stream_pushes_federated_bundle_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = stack_with_entry(dir.path(), &[]).await;
    let own = stored_cas(&server);
    let mut stream = bundle_stream(&agent).await;
    let within = Duration::from_secs(15);

    let first = next_message(&mut stream, within, "the first message").await;
    assert_eq!(cas(&first, TD), Some(own.clone()), "own bundle at once");
    assert_eq!(cas(&first, "other.org"), None, "no other.org bundle yet");

    let ca1 = foreign_ca();
    set_foreign_bundle(&server, &[&ca1]);
    let added = next_message(&mut stream, within, "other.org's bundle").await;
    assert_eq!(cas(&added, "other.org"), Some(vec![ca1.clone()]));
    assert_eq!(
        cas(&added, TD),
        Some(own.clone()),
        "full state, not a delta"
    );

    let ca2 = foreign_ca();
    set_foreign_bundle(&server, &[&ca2]);
    let replaced = next_message(&mut stream, within, "other.org's new CA").await;
    assert_eq!(cas(&replaced, "other.org"), Some(vec![ca2]));
    assert_eq!(cas(&replaced, TD), Some(own.clone()));

    server.cli_ok(&["bundle", "delete", "-id", OTHER]);
    let redacted = next_message(&mut stream, within, "other.org's bundle removed").await;
    assert_eq!(
        cas(&redacted, "other.org"),
        None,
        "a dropped bundle is redacted"
    );
    assert_eq!(cas(&redacted, TD), Some(own));
}

/// The server prepares its next CA at half the current one's life and publishes it at once;
/// an open `FetchX509Bundles` stream pushes the bundle with both CAs.
#[tokio::test]
async fn x509_bundle_stream_pushes_the_prepared_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 40 s CA, valid from 10 s back: its successor is prepared at half of those 50 s, 15 s
    // after the server starts, leaving the stack ample time to come up and open the stream.
    let flags = ["-caTTL", "40s", "-defaultX509SVIDTTL", "10s"];
    let (server, agent) = stack_with_entry(dir.path(), &flags).await;
    let mut stream = bundle_stream(&agent).await;
    let first = next_message(&mut stream, Duration::from_secs(15), "the first message").await;
    let active = cas(&first, TD).expect("own bundle");
    assert_eq!(active.len(), 1, "one CA before the preparation");

    let next = next_message(&mut stream, Duration::from_secs(25), "the prepared CA").await;
    let both = cas(&next, TD).expect("own bundle");
    assert_eq!(both.len(), 2, "the active and the prepared CA");
    assert!(both.contains(&active[0]), "the active CA stays");
    let mut stored = stored_cas(&server);
    let mut pushed = both;
    stored.sort();
    pushed.sort();
    assert_eq!(pushed, stored, "what the server published");
}
