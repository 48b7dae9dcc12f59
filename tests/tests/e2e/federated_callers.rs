//! Callers from federated trust domains (issue 17): a Nexus of `example.org` (A) configured
//! with `trust_domains = ["other.org"]`, its agent delivering the bundles of `other.org` (B)
//! and `third.org` (C) because Nexus's registration entry federates with both.
//!
//! - A workload of B reads a secret at A by a policy naming its SPIFFE ID; it gets nothing
//!   else, and the audit log records its full SPIFFE ID.
//! - A workload of C, whose bundle Nexus holds but whose trust domain is not listed, is refused
//!   at the handshake (`foreign_trust_domain` in `nexus_tls_handshake_failures_total`).
//! - B's ID shaped like A's superuser role is an ordinary caller: it manages nothing, and reads
//!   only what a policy gives it; once `superuser_trust_domains` lists B, it is a superuser.
//! - Removing the federation (Nexus's entry no longer federates with B, so its agent stops
//!   delivering B's bundle) refuses B's new connections at the handshake.
//! - A keeper with `--nexus-trust-domains other.org` serves B's Nexus and refuses C's at the
//!   handshake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use nexus_api::ClientError;
use nexus_api::routes::{self, Action};
use serde_json::{Value, json};
use spiffe::{TrustDomain, X509Source};
use tests::mtls::{self, Request};
use tests::secrets::{KEEPER_ID, NEXUS_ID, SecretsStack, TD, unix_path, values};
use tests::stack::{Agent, Process, Server};
use tests::{bin, json, metric, next_id, stderr, stdout, wait_for};

const READER: &str = "spiffe://other.org/app/reader";
/// B's ID with the path of A's superuser role.
const LOOK_ALIKE: &str = "spiffe://other.org/spike/pilot/role/superuser";
const STRANGER: &str = "spiffe://third.org/app/reader";
const SECRET: &str = "federated-s3cret";

/// Another trust domain: its server and agent, each trust domain holding the other's
/// bundle (exchanged as operators do, `bundle show` then `bundle set`).
struct Foreign {
    server: Server,
    agent: Agent,
    agent_id: String,
}

async fn foreign(dir: &Path, td: &str, home: &Server) -> Foreign {
    let server = Server::start(&dir.join(td), td, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.join(format!("agent-{td}")), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    for (from, to) in [(home, &server), (&server, home)] {
        let path = dir.join(format!("{}-bundle.json", from.trust_domain));
        std::fs::write(&path, from.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("write bundle");
        to.cli_ok(&[
            "bundle",
            "set",
            "-id",
            &format!("spiffe://{}", from.trust_domain),
            "-format",
            "spiffe",
            "-path",
            path.to_str().expect("UTF-8"),
        ]);
    }
    Foreign {
        server,
        agent,
        agent_id,
    }
}

impl Foreign {
    /// Registers processes of this uid running `binary` as `spiffe_id`, federating with A
    /// (so they can verify Nexus).
    fn register(&self, binary: &Path, spiffe_id: &str) {
        let uid = format!("unix:uid:{}", nix::unistd::geteuid());
        self.server.create_entry(
            spiffe_id,
            &self.agent_id,
            &[&uid, &unix_path(binary)],
            &["-federatesWith", &format!("spiffe://{TD}")],
        );
    }

    /// The test process as `spiffe_id`, once its SVID and A's bundle have arrived.
    async fn identity_as(&self, spiffe_id: &str) -> X509Source {
        self.register(
            &std::env::current_exe().expect("test executable"),
            spiffe_id,
        );
        let source =
            identity::workload::x509_source(Some(&self.agent.endpoint()), Duration::from_secs(30))
                .await
                .expect("the test's SVID");
        let td = TrustDomain::new(TD).expect("td");
        wait_for(
            "A's bundle at the workload",
            Duration::from_secs(20),
            || {
                let found = source.try_bundle_for_trust_domain(&td).map(|_| ());
                async move { found }
            },
        )
        .await;
        assert_eq!(
            identity::workload::own_id(&source)
                .expect("own ID")
                .to_string(),
            spiffe_id
        );
        source
    }

    /// A copy of `spike` registered here as `spiffe_id`.
    fn workload(&self, dir: &Path, name: &str, spiffe_id: &str) -> PathBuf {
        let dir = dir.join(format!("bin-{}", self.server.trust_domain));
        std::fs::create_dir_all(&dir).expect("bin dir");
        let path = dir.join(name);
        std::fs::copy(bin("spike"), &path).expect("copying spike");
        self.register(&path, spiffe_id);
        path
    }

    /// Runs `binary` (a `spike` copy of this trust domain) against A's Nexus.
    fn run(&self, stack: &SecretsStack, binary: &Path, args: &[&str]) -> Output {
        Command::new(binary)
            .args(args)
            .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint())
            .env("SPIKE_NEXUS_API_URL", stack.nexus_url())
            .env("SPIKE_TRUST_ROOT_NEXUS", TD)
            .output()
            .expect("running spike")
    }
}

/// Makes Nexus's registration entry at A federate with exactly `trust_domains`.
fn nexus_federates_with(stack: &SecretsStack, trust_domains: &[&str]) {
    entry_federates_with(stack, NEXUS_ID, trust_domains);
}

/// Makes the registration entry of `spiffe_id` at A federate with exactly `trust_domains`
/// (the entry is replaced whole, as `entry update` does).
fn entry_federates_with(stack: &SecretsStack, spiffe_id: &str, trust_domains: &[&str]) {
    let shown =
        json(
            &stack
                .server
                .cli_ok(&["entry", "show", "-spiffeID", spiffe_id, "-output", "json"]),
        );
    let entries = shown["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{shown}");
    let entry = &entries[0];
    let selectors = tests::stack::selector_strings(entry);
    let mut args: Vec<String> = [
        "entry",
        "update",
        "-entryID",
        entry["id"].as_str().expect("id"),
        "-spiffeID",
        spiffe_id,
        "-parentID",
        entry["parent_id"].as_str().expect("parent"),
    ]
    .map(str::to_owned)
    .to_vec();
    for selector in selectors {
        args.extend(["-selector".to_owned(), selector]);
    }
    for td in trust_domains {
        args.extend(["-federatesWith".to_owned(), format!("spiffe://{td}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stack.server.cli_ok(&args);
}

/// A policy letting B's apps (`other.org/app/...`) read `fed/...`.
fn let_other_org_apps_read_fed(stack: &SecretsStack) {
    stack.spike_ok(&[
        "policy",
        "create",
        "--name",
        "other-readers",
        "--spiffeid-pattern",
        "^spiffe://other\\.org/app/.*$",
        "--path-pattern",
        "^fed/.*$",
        "--permissions",
        "read",
    ]);
}

/// A client TLS config presenting `source`'s SVID, accepting only A's Nexus.
fn to_nexus(source: &X509Source) -> Arc<rustls::ClientConfig> {
    tests::secrets::nexus_tls(source)
}

/// Reads `path` over a new connection (raw, to see a refused handshake's alert).
async fn read_raw(
    stack: &SecretsStack,
    tls: &Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<mtls::Answer> {
    let request = Request::post_json(Action::Get.url(routes::SECRETS), &json!({ "path": path }));
    mtls::send(tls, stack.nexus_port, &request).await
}

/// Nexus's count of handshakes refused for a peer's trust domain.
async fn foreign_refusals(stack: &SecretsStack) -> f64 {
    metric(
        &stack.metrics().await,
        "nexus_tls_handshake_failures_total",
        &[("listener", "api"), ("reason", "foreign_trust_domain")],
    )
    .unwrap_or(0.0)
}

/// Waits until Nexus has counted more than `before` refusals for a foreign trust domain.
async fn wait_refusals_above(stack: &SecretsStack, before: f64) {
    wait_for(
        "the refusal in nexus_tls_handshake_failures_total",
        Duration::from_secs(20),
        || async move { (foreign_refusals(stack).await > before).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_callers_get_what_policies_grant_and_no_role_unless_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 2, None).await;
    let b = foreign(dir.path(), "other.org", &stack.server).await;
    let c = foreign(dir.path(), "third.org", &stack.server).await;
    // Nexus's agent delivers both bundles; Nexus trusts B alone.
    nexus_federates_with(&stack, &["other.org", "third.org"]);
    stack.nexus_config = "trust_domains = [\"other.org\"]\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let log = stack.nexus_log();
    assert!(
        log.contains("accepting callers of federated trust domains") && log.contains("other.org"),
        "{log}"
    );

    stack.spike_put("fed/db", "password", SECRET);
    stack.spike_ok(&["secret", "put", "local/db", "password=local-only"]);
    let_other_org_apps_read_fed(&stack);

    // B's workload reads what the policy grants, once Nexus's SVID source holds B's bundle
    // (the agent syncs the updated entry on its own schedule).
    let reader = b.identity_as(READER).await;
    let read = wait_for("B's workload to read at A", Duration::from_secs(30), || {
        let client = stack.client(&reader);
        async move { client.get_secret("fed/db", 0).await.ok() }
    })
    .await;
    assert_eq!(read.data.get("password").map(|v| v.as_str()), Some(SECRET));
    let client = stack.client(&reader);
    for denied in [
        client.get_secret("local/db", 0).await.map(drop),
        client
            .put_secret("fed/db", values(&[("password", "overwritten")]), None)
            .await
            .map(drop),
        client
            .list_policies(&nexus_api::model::ListPoliciesRequest::default())
            .await
            .map(drop),
    ] {
        let error = denied.expect_err("not granted");
        assert_eq!(
            error.code(),
            Some(nexus_api::ErrorCode::Unauthorized),
            "{error}"
        );
        assert!(error.to_string().contains(READER), "{error}");
    }
    assert_eq!(client.list_secrets().await.expect("list"), ["fed/db"]);

    // The audit log records B's caller by its full SPIFFE ID.
    let audit = stack.audit_entries();
    let lines: Vec<&Value> = audit.iter().filter(|l| l["caller"] == READER).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == "fed/db" && l["decision"] == "allow" && l["status"] == 200),
        "{audit:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == "local/db" && l["decision"] == "deny" && l["status"] == 401),
        "{audit:?}"
    );

    // C's workload: Nexus holds C's bundle but does not list C, so the handshake refuses it.
    let stranger = c.identity_as(STRANGER).await;
    let before = foreign_refusals(&stack).await;
    let refused = read_raw(&stack, &to_nexus(&stranger), "fed/db")
        .await
        .expect_err("C is not listed");
    assert_eq!(
        mtls::alert(&refused),
        Some(rustls::AlertDescription::HandshakeFailure),
        "{refused}"
    );
    wait_refusals_above(&stack, before).await;
    // The warning names the reason and the trust domain (it follows the count).
    let line = wait_for(
        "the refusal in Nexus's log",
        Duration::from_secs(20),
        || {
            let line = stack.nexus_log().lines().find_map(|l| {
                (l.contains("TLS handshake failed")
                    && l.contains("foreign_trust_domain")
                    && l.contains("third.org"))
                .then(|| l.to_owned())
            });
            async move { line }
        },
    )
    .await;
    assert!(line.contains("WARN"), "{line}");
    assert!(
        !std::fs::read_to_string(stack.audit_log())
            .expect("audit log")
            .contains("third.org"),
        "a refused handshake reaches no route"
    );

    // B's look-alike of A's superuser is an ordinary caller: no role, and policies judge it.
    let look_alike = b.workload(dir.path(), "look-alike", LOOK_ALIKE);
    for args in [
        vec!["policy", "list"],
        vec!["secret", "get", "fed/db", "password"],
        vec!["secret", "put", "fed/db", "password=taken"],
        vec!["operator", "rotate"],
    ] {
        let out = b.run(&stack, &look_alike, &args);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("Not authorised"), "{args:?}: {err}");
        assert!(err.contains(LOOK_ALIKE), "{args:?}: {err}");
    }
    stack.spike_ok(&[
        "policy",
        "create",
        "--name",
        "look-alike-reads",
        "--spiffeid-pattern",
        "^spiffe://other\\.org/spike/pilot/role/superuser$",
        "--path-pattern",
        "^fed/.*$",
        "--permissions",
        "read",
    ]);
    let out = b.run(
        &stack,
        &look_alike,
        &["secret", "get", "fed/db", "password"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), SECRET);
    assert!(
        !b.run(&stack, &look_alike, &["policy", "list"])
            .status
            .success()
    );

    // Listed for the superuser role, the same ID is a superuser.
    stack.kill_nexus();
    stack.nexus_config =
        "trust_domains = [\"other.org\"]\nsuperuser_trust_domains = [\"other.org\"]\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let out = b.run(&stack, &look_alike, &["policy", "list", "-f", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = json(&stdout(&out))
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["look-alike-reads", "other-readers"]);
    let out = b.run(
        &stack,
        &look_alike,
        &["secret", "get", "local/db", "password"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "local-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_federation_cuts_a_trust_domain_off_at_the_handshake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 2, None).await;
    let b = foreign(dir.path(), "other.org", &stack.server).await;
    nexus_federates_with(&stack, &["other.org"]);
    stack.nexus_config = "trust_domains = [\"other.org\"]\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    stack.spike_put("fed/db", "password", SECRET);
    let_other_org_apps_read_fed(&stack);
    let reader = b.identity_as(READER).await;
    let tls = to_nexus(&reader);
    let answer = wait_for("B's workload to read at A", Duration::from_secs(30), || {
        let (stack, tls) = (&stack, &tls);
        async move { read_raw(stack, tls, "fed/db").await.ok() }
    })
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["data"]["password"], SECRET);
    // A client whose pool keeps its connection open across the removal below.
    let kept = stack.client(&reader);
    let read = kept.get_secret("fed/db", 0).await.expect("B reads at A");
    assert_eq!(read.data.get("password").map(String::as_str), Some(SECRET));

    // Nexus's entry no longer federates with B: its agent stops delivering B's bundle, and
    // every new connection of B is refused at the handshake, though B is still listed.
    let before = foreign_refusals(&stack).await;
    nexus_federates_with(&stack, &[]);
    let refused = wait_for(
        "B to be refused once its bundle is gone",
        Duration::from_secs(30),
        || {
            let (stack, tls) = (&stack, &tls);
            async move { read_raw(stack, tls, "fed/db").await.err() }
        },
    )
    .await;
    assert_eq!(
        mtls::alert(&refused),
        Some(rustls::AlertDescription::HandshakeFailure),
        "{refused}"
    );
    wait_refusals_above(&stack, before).await;
    // Not a passing fault: it stays refused.
    let again = read_raw(&stack, &tls, "fed/db")
        .await
        .expect_err("still cut off");
    assert_eq!(
        mtls::alert(&again),
        Some(rustls::AlertDescription::HandshakeFailure)
    );
    // The connection B opened before, kept alive, is cut off too: each request on it is
    // refused (an answer, so the connection was still open: a new one would have failed
    // its handshake), audited as a denial naming the trust domain.
    let cut = kept
        .get_secret("fed/db", 0)
        .await
        .expect_err("a kept-alive connection does not outlive the federation");
    assert!(
        matches!(&cut, ClientError::Api { status: 401, message, .. }
            if message.contains("no longer federates with") && message.contains("other.org")),
        "{cut}"
    );
    // A's own callers are unaffected.
    assert_eq!(stack.spike_get("fed/db", "password").trim(), SECRET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_serves_the_nexus_of_a_listed_trust_domain_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = SecretsStack::start_without_nexus(dir.path(), 0, None).await;
    let b = foreign(dir.path(), "other.org", &stack.server).await;
    let c = foreign(dir.path(), "third.org", &stack.server).await;
    // The keeper's agent delivers both bundles; the keeper lists B alone.
    entry_federates_with(&stack, KEEPER_ID, &["other.org", "third.org"]);
    let mut cmd = Command::new(bin("keeper"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--trust-domain",
        TD,
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .env("SPIKE_KEEPER_NEXUS_TRUST_DOMAINS", "other.org")
    .env("SPIFFE_ENDPOINT_SOCKET", stack.agent.endpoint());
    let mut keeper = Process::spawn(cmd, dir.path().join(format!("keeper-{}.log", next_id())));
    let port = keeper.logged_address("keeper ready").await.port();
    let metrics = keeper.metrics_address().await;
    let health = Request {
        method: "GET",
        target: routes::KEEPER_HEALTH.to_owned(),
        content_type: "application/json",
        body: Vec::new(),
    };
    let to_keeper = |source: &X509Source| {
        let td = TrustDomain::new(TD).expect("td");
        let keeper = identity::SpiffeId::new(KEEPER_ID).expect("keeper ID");
        Arc::new(
            identity::workload::client_config(
                source.clone(),
                td,
                identity::workload::exactly(keeper),
            )
            .expect("client TLS config"),
        )
    };

    // B's Nexus is served, once the keeper's SVID source holds B's bundle.
    let nexus_b = b.identity_as("spiffe://other.org/spike/nexus").await;
    let tls = to_keeper(&nexus_b);
    let answer = wait_for(
        "B's Nexus to reach the keeper",
        Duration::from_secs(30),
        || {
            let (tls, health) = (&tls, &health);
            async move { mtls::send(tls, port, health).await.ok() }
        },
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["hasShard"], false);
    // A pooled client of B's Nexus, whose connection stays open across the removal below.
    let kept = identity::https_client::HttpsClient::new((*tls).clone(), Duration::from_secs(10));
    let health_url = identity::https_client::HttpsClient::parse_url(&format!(
        "https://127.0.0.1:{port}{}",
        routes::KEEPER_HEALTH
    ))
    .expect("health URL");
    let (status, _) = kept
        .get(health_url.clone())
        .await
        .expect("B's Nexus is served");
    assert_eq!(status, 200);

    // C's Nexus-shaped ID: its bundle is there, its trust domain is not listed.
    let nexus_c = c.identity_as("spiffe://third.org/spike/nexus").await;
    let refused = mtls::send(&to_keeper(&nexus_c), port, &health)
        .await
        .expect_err("third.org is not listed");
    assert_eq!(
        mtls::alert(&refused),
        Some(rustls::AlertDescription::HandshakeFailure),
        "{refused}"
    );
    wait_for(
        "the refusal in keeper_tls_handshake_failures_total",
        Duration::from_secs(20),
        || {
            let metrics = metrics.clone();
            async move {
                let text = tests::http_get(&metrics, "/metrics").await;
                metric(
                    &text,
                    "keeper_tls_handshake_failures_total",
                    &[("reason", "foreign_trust_domain")],
                )
                .filter(|n| *n >= 1.0)
            }
        },
    )
    .await;

    // The keeper's entry no longer federates with B: new connections of B's Nexus are
    // refused at the handshake, and so is every request on the one it kept open (an answer,
    // so that connection was still open: a new one would have failed its handshake).
    entry_federates_with(&stack, KEEPER_ID, &["third.org"]);
    let refused = wait_for(
        "B's Nexus to be refused once its bundle is gone",
        Duration::from_secs(30),
        || {
            let (tls, health) = (&tls, &health);
            async move { mtls::send(tls, port, health).await.err() }
        },
    )
    .await;
    assert_eq!(
        mtls::alert(&refused),
        Some(rustls::AlertDescription::HandshakeFailure),
        "{refused}"
    );
    let (status, body) = kept
        .get(health_url)
        .await
        .expect("an answer on the kept-alive connection");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("no longer federates with other.org"),
        "{body}"
    );
    keeper.kill();
}
