//! The identity plane end to end: a real server and agent, real SPIFFE clients.

use std::sync::Arc;
use std::time::Duration;

use spiffe::{WorkloadApiClient, X509Source};
use tests::stack::{Agent, Server};
use tests::wait_for;
use x509_parser::prelude::*;

const TD: &str = "example.org";

fn uid() -> String {
    nix::unistd::geteuid().as_raw().to_string()
}

/// A server, an agent attested with a fresh token, and the agent's ID.
async fn stack(dir: &std::path::Path) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    (server, agent, agent_id)
}

async fn client(agent: &Agent) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connecting to the Workload API")
}

/// Fetches the default X509-SVID, waiting for the agent to sync a new entry.
async fn fetch_svid(agent: &Agent) -> spiffe::X509Svid {
    wait_for(
        "an X509-SVID from the agent",
        Duration::from_secs(20),
        || async { client(agent).await.fetch_x509_svid().await.ok() },
    )
    .await
}

/// Checks every rule of the X509-SVID standard that clients depend on.
fn assert_x509_svid_rules(leaf_der: &[u8], expected_id: &str, ca_der: &[u8]) {
    let (_, leaf) = X509Certificate::from_der(leaf_der).expect("leaf parses");
    let (_, ca) = X509Certificate::from_der(ca_der).expect("CA parses");

    let san = leaf
        .subject_alternative_name()
        .expect("SAN ok")
        .expect("SAN present");
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| {
            if let GeneralName::URI(u) = n {
                Some(*u)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        uris,
        [expected_id],
        "exactly one URI SAN holding the SPIFFE ID"
    );

    let bc = leaf
        .basic_constraints()
        .expect("BC ok")
        .expect("basicConstraints present");
    assert!(!bc.value.ca, "leaf must not be a CA");
    let ku = leaf.key_usage().expect("KU ok").expect("keyUsage present");
    assert!(ku.critical, "keyUsage must be critical");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf
        .extended_key_usage()
        .expect("EKU ok")
        .expect("EKU present");
    assert!(eku.value.server_auth && eku.value.client_auth);

    let serial = leaf.raw_serial();
    assert!(
        !serial.is_empty() && serial.len() <= 17,
        "serial is a positive 128-bit number"
    );
    assert!(
        leaf.validity().not_after <= ca.validity().not_after,
        "NotAfter capped by the CA"
    );
    let now = ASN1Time::now();
    assert!(leaf.validity().not_before < now, "NotBefore is backdated");
    leaf.verify_signature(Some(ca.public_key()))
        .expect("leaf is signed by the bundle's CA");
    assert!(ca.is_ca());
}

#[tokio::test]
async fn real_clients_fetch_and_validate_svids_from_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let app_id = "spiffe://example.org/app";
    server.create_entry(
        app_id,
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &["-dns", "app.internal"],
    );

    let svid = fetch_svid(&agent).await;
    assert_eq!(svid.spiffe_id().to_string(), app_id);

    let bundles = client(&agent)
        .await
        .fetch_x509_bundles()
        .await
        .expect("bundles");
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let bundle = bundles.get(&td).expect("own trust domain bundle");
    let ca = bundle
        .authorities()
        .first()
        .expect("one CA")
        .as_ref()
        .to_vec();
    let leaf = svid.leaf().as_ref().to_vec();
    assert_x509_svid_rules(&leaf, app_id, &ca);

    // The X509Source used by every workload in this project sees the same identity.
    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("X509Source");
    assert_eq!(source.svid().expect("svid").spiffe_id().to_string(), app_id);

    // The server's own view: the agent is listed and the bundle is the one workloads got.
    let agents = server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&agent_id), "{agents}");
    let shown = server.cli_ok(&["bundle", "show"]);
    let parsed = ::pem::parse(shown.trim()).expect("bundle PEM");
    assert_eq!(parsed.contents(), ca.as_slice());
}

#[tokio::test]
async fn two_workloads_do_mtls_and_see_each_others_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let me = std::env::current_exe()
        .expect("test exe")
        .canonicalize()
        .expect("canonical");
    let peer_bin = tests::bin("mtls-peer").canonicalize().expect("peer binary");
    let server_id = "spiffe://example.org/workload/server";
    let client_id = "spiffe://example.org/workload/client";
    let uid = format!("unix:uid:{}", uid());
    server.create_entry(
        server_id,
        &agent_id,
        &[&uid, &format!("unix:path:{}", me.display())],
        &[],
    );
    server.create_entry(
        client_id,
        &agent_id,
        &[&uid, &format!("unix:path:{}", peer_bin.display())],
        &[],
    );

    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("X509Source for the server workload");
    assert_eq!(
        source.svid().expect("svid").spiffe_id().to_string(),
        server_id
    );
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let client = identity::SpiffeId::new(client_id).expect("id");
    let config = identity::workload::server_config(source, td, identity::workload::exactly(client))
        .expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("handshake");
        let peer = identity::peer::peer_spiffe_id(tls.get_ref().1).expect("client SVID");
        use tokio::io::AsyncWriteExt;
        tls.write_all(format!("{peer}\n").as_bytes())
            .await
            .expect("write");
        tls.shutdown().await.ok();
        peer.to_string()
    });

    let output = tokio::process::Command::new(&peer_bin)
        .args([addr.to_string(), server_id.to_string()])
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()
        .await
        .expect("running mtls-peer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mtls-peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("server={server_id}")), "{stdout}");
    assert!(stdout.contains(&format!("seen-as={client_id}")), "{stdout}");
    assert_eq!(accept.await.expect("server task"), client_id);
}

#[tokio::test]
async fn svids_rotate_before_expiry_and_deleted_entries_end_the_stream() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let entry = server.create_entry(
        "spiffe://example.org/short",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &["-x509SVIDTTL", "4"],
    );
    fetch_svid(&agent).await;
    let mut stream = client(&agent)
        .await
        .stream_x509_svids()
        .await
        .expect("stream");
    let first = stream
        .next()
        .await
        .expect("first message")
        .expect("first SVID");
    let first_leaf = first.leaf().as_ref().to_vec();
    let (_, cert) = X509Certificate::from_der(&first_leaf).expect("leaf");
    let first_expiry = cert.validity().not_after.timestamp();

    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let svid = stream
                .next()
                .await
                .expect("stream open")
                .expect("rotated SVID");
            if svid.leaf().as_ref() != first_leaf.as_slice() {
                return svid;
            }
        }
    })
    .await
    .expect("a rotated SVID within 10s");
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        received_at < first_expiry,
        "the new SVID must arrive before the old one expires"
    );
    assert_eq!(next.spiffe_id().to_string(), "spiffe://example.org/short");

    server.cli_ok(&["entry", "delete", "-entryID", &entry]);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e.to_string(),
                None => return "stream ended without an error".into(),
            }
        }
    })
    .await
    .expect("stream ends after the entry is deleted");
    assert!(end.to_lowercase().contains("no identity"), "{end}");
}

#[tokio::test]
async fn workload_api_refuses_missing_header_and_unknown_callers() {
    use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent, _agent_id) = stack(dir.path()).await;

    // No entry matches this process: PermissionDenied with SPIRE's wording.
    let err = client(&agent)
        .await
        .fetch_x509_svid()
        .await
        .expect_err("no entry yet");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("no identity issued"),
        "{err}"
    );

    // Without the security header: InvalidArgument, before any attestation.
    let channel = spire_proto::uds::connect(&agent.socket)
        .await
        .expect("channel");
    let status = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(spire_proto::workload::X509svidRequest {})
        .await
        .expect_err("header required");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("security header"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn entry_create_rejects_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let parent = "spiffe://example.org/spire/agent/join_token/x";
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "-spiffeID",
                "spiffe://Example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a//b",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "http://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://other.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "trust domain",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                "nope",
                "-selector",
                "unix:uid:1",
            ],
            "parentID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix",
            ],
            "type:value",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:",
            ],
            "value is empty",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["entry", "create"];
        args.extend_from_slice(flags);
        let out = server.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} should fail");
        assert!(
            stderr.contains(expected),
            "{flags:?}: expected {expected:?} in {stderr}"
        );
    }
    let shown = server.cli_ok(&["entry", "show"]);
    assert!(
        shown.starts_with("Found 0 entries"),
        "nothing was written: {shown}"
    );

    // A duplicate of an existing entry is refused, and the first one is untouched.
    let flags = ["-selector", "unix:uid:1"];
    server.create_entry("spiffe://example.org/a", parent, &[], &flags);
    let mut dup = vec![
        "entry",
        "create",
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        parent,
    ];
    dup.extend_from_slice(&flags);
    let out = server.cli(&dup);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert!(
        server
            .cli_ok(&["entry", "show"])
            .starts_with("Found 1 entry")
    );
}

#[tokio::test]
async fn join_tokens_are_single_use_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let bundle = server.write_bundle();

    let token = server.join_token(&[]);
    let _first = Agent::start(&server, &dir.path().join("a1"), Some(&token)).await;
    let first_id = server.agent_id(&token);
    assert_eq!(server.agent_ids(), std::slice::from_ref(&first_id));
    let mut reuse = Agent::spawn(&server, &dir.path().join("a2"), Some(&token), &bundle);
    let status = reuse.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = reuse.process.log();
    assert!(
        log.contains("does not exist or has already been used"),
        "{log}"
    );
    // The reused token created nothing and changed nothing.
    assert_eq!(server.agent_ids(), std::slice::from_ref(&first_id));

    let short = server.join_token(&["-ttl", "1"]);
    // The token expires one second after it was generated (whole seconds, by the server's
    // clock, which is this machine's): wait on the clock until that has surely passed.
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    let generated = unix_now();
    wait_for("the short token to expire", Duration::from_secs(10), || {
        let expired = unix_now() > generated + 1;
        async move { expired.then_some(()) }
    })
    .await;
    let mut late = Agent::spawn(&server, &dir.path().join("a3"), Some(&short), &bundle);
    let status = late.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = late.process.log();
    assert!(log.contains("join token expired"), "{log}");
    assert_eq!(
        server.agent_ids(),
        [first_id],
        "an expired token creates no agent record"
    );
    assert!(
        !server.agent_ids().contains(&server.agent_id(&short)),
        "the expired token's agent is not listed"
    );
}

#[tokio::test]
async fn agents_restart_without_a_token_until_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent, agent_id) = stack(dir.path()).await;
    server.create_entry(
        "spiffe://example.org/app",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    fetch_svid(&agent).await;

    // Restart with the data dir and no token: the stored agent SVID is enough.
    agent.process.kill();
    let agent = Agent::start(&server, &dir.path().join("agent"), None).await;
    assert_eq!(
        fetch_svid(&agent).await.spiffe_id().to_string(),
        "spiffe://example.org/app"
    );
    assert_eq!(server.agent_ids(), std::slice::from_ref(&agent_id));
    drop(agent);

    server.cli_ok(&["agent", "evict", "-spiffeID", &agent_id]);
    assert_eq!(server.agent_ids(), Vec::<String>::new());
    let bundle = server.write_bundle();
    let mut evicted = Agent::spawn(&server, &dir.path().join("agent"), None, &bundle);
    let status = evicted.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = evicted.process.log();
    assert!(
        log.contains("not attested") && log.contains("new join token"),
        "{log}"
    );
    // The refused agent wrote nothing back, and dropped the SVID it can no longer use.
    assert_eq!(server.agent_ids(), Vec::<String>::new());
    assert!(!evicted.data_dir.join("agent-svid.pem").exists());
}

#[tokio::test]
async fn agent_refuses_a_server_outside_its_trust_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let other = Server::start(&dir.path().join("other"), TD, &[]).await;
    let token = server.join_token(&[]);
    let wrong_bundle = other.write_bundle();
    let mut agent = Agent::spawn(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &wrong_bundle,
    );
    let status = agent.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = agent.process.log();
    assert!(log.contains("trust bundle"), "{log}");
    // The token was not consumed by the failed attempt.
    let _ok = Agent::start(&server, &dir.path().join("agent2"), Some(&token)).await;
}

#[tokio::test]
async fn server_runs_on_postgresql() {
    let db = common_sql::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-dataStore", db.url()]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    server.create_entry(
        "spiffe://example.org/pg",
        &server.agent_id(&token),
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    assert_eq!(
        fetch_svid(&agent).await.spiffe_id().to_string(),
        "spiffe://example.org/pg"
    );
}

#[tokio::test]
async fn admin_cli_updates_entries_mints_svids_and_prints_spiffe_bundles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let parent = "spiffe://example.org/spire/agent/join_token/x";
    let id = server.create_entry("spiffe://example.org/a", parent, &["unix:uid:1"], &[]);
    let updated = server.cli_ok(&[
        "entry",
        "update",
        "-entryID",
        &id,
        "-spiffeID",
        "spiffe://example.org/b",
        "-parentID",
        parent,
        "-selector",
        "unix:uid:2",
        "-x509SVIDTTL",
        "60",
        "-hint",
        "internal",
        "-output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&updated).expect("json");
    assert_eq!(json["spiffe_id"], "spiffe://example.org/b");
    assert_eq!(json["revision_number"], 1);
    assert_eq!(json["x509_svid_ttl"], 60);
    let shown = server.cli_ok(&["entry", "show", "-selector", "unix:uid:2"]);
    assert!(shown.contains("Hint             : internal"), "{shown}");

    let out = dir.path().join("minted");
    std::fs::create_dir_all(&out).expect("dir");
    server.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        "spiffe://example.org/minted",
        "-ttl",
        "120",
        "-write",
        out.to_str().expect("utf8"),
    ]);
    let svid = ::pem::parse(std::fs::read(out.join("svid.pem")).expect("svid")).expect("pem");
    let bundle = ::pem::parse(std::fs::read(out.join("bundle.pem")).expect("bundle")).expect("pem");
    assert_x509_svid_rules(
        svid.contents(),
        "spiffe://example.org/minted",
        bundle.contents(),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the minted key is readable only by its owner"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("JWKS");
    let keys = doc["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "the CA and the JWT signing key: {doc}");
    assert_eq!(keys[0]["use"], "x509-svid");
    assert!(
        keys[0].get("kid").is_none(),
        "X509-SVID §6: x509 authorities carry no kid"
    );
    assert_eq!(keys[0]["x5c"].as_array().expect("x5c").len(), 1);
    assert_eq!(keys[1]["use"], "jwt-svid");
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(
        keys[1]["kid"].as_str().map(str::len),
        Some(32),
        "JWT-SVID §6: JWT authorities carry a kid"
    );
    assert!(keys[1].get("x5c").is_none());
    assert!(doc["spiffe_sequence"].as_i64().expect("sequence") >= 1);
}

#[tokio::test]
async fn agent_renews_its_own_svid_at_half_life() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-agentTTL", "4s"]).await;
    let token = server.join_token(&[]);
    let _agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let serial = || {
        let list: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["agent", "list", "-output", "json"]))
                .expect("json");
        list["agents"][0]["x509svid_serial_number"]
            .as_str()
            .expect("serial")
            .to_owned()
    };
    let first = serial();
    let renewed = wait_for(
        "the agent to renew its SVID",
        Duration::from_secs(15),
        || {
            let now = serial();
            let first = first.clone();
            async move { (now != first).then_some(now) }
        },
    )
    .await;
    assert_ne!(renewed, first);
}

#[tokio::test]
async fn server_and_agent_export_prometheus_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_metrics = format!("127.0.0.1:{}", tests::free_port());
    let agent_metrics = format!("127.0.0.1:{}", tests::free_port());
    let server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-metricsAddress", &server_metrics],
    )
    .await;
    let token = server.join_token(&[]);
    let agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &["-metricsAddress", &agent_metrics],
    )
    .await;
    let agent_id = server.agent_id(&token);
    server.create_entry(
        "spiffe://example.org/app",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    fetch_svid(&agent).await;
    // A call without an identity: the entry below matches no process.
    let denied = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connect")
        .fetch_jwt_svid(
            &["aud"],
            Some(&"spiffe://example.org/other".parse().expect("id")),
        )
        .await;
    assert!(denied.is_err());

    let text = tests::http_get(&server_metrics, "/metrics").await;
    let sample = |name: &str, labels: &[(&str, &str)]| tests::metric(&text, name, labels);
    assert_eq!(
        sample("spire_server_node_attestations_total", &[("outcome", "ok")]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            "spire_server_svids_signed_total",
            &[("kind", "x509"), ("for", "agent")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            "spire_server_svids_signed_total",
            &[("kind", "x509"), ("for", "workload")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(sample("spire_server_entries", &[]), Some(1.0));
    assert_eq!(sample("spire_server_agents", &[]), Some(1.0));

    let text = tests::http_get(&agent_metrics, "/metrics").await;
    let sample = |name: &str, labels: &[(&str, &str)]| tests::metric(&text, name, labels);
    assert!(
        sample(
            "spire_agent_workload_api_calls_total",
            &[("rpc", "FetchX509SVID"), ("code", "OK")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "spire_agent_workload_api_calls_total",
            &[("rpc", "FetchJWTSVID"), ("code", "PermissionDenied")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample("spire_agent_svids_cached", &[]), Some(1.0));
}

/// Two servers of one trust domain on one PostgreSQL database, as SPIRE runs HA: each keeps
/// its own CA key, both CAs are in the shared bundle, and a token or entry created through
/// one server works through the other.
#[tokio::test]
async fn two_servers_share_one_database_each_with_its_own_ca() {
    let db = common_sql::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a"), TD, &["-dataStore", db.url()]).await;
    let b = Server::start(&dir.path().join("b"), TD, &["-dataStore", db.url()]).await;

    let spiffe_bundle = |server: &Server| -> Vec<String> {
        tests::bundle_cas(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
    };
    let from_a = spiffe_bundle(&a);
    assert_eq!(from_a.len(), 2, "both servers' CAs are published");
    assert_ne!(from_a[0], from_a[1], "each server has its own CA key");
    assert_eq!(spiffe_bundle(&b), from_a, "both serve the same bundle");

    // A token made through B attests an agent at A; an entry made through B reaches it.
    let token = b.join_token(&[]);
    let agent = Agent::start(&a, &dir.path().join("agent"), Some(&token)).await;
    b.create_entry(
        "spiffe://example.org/ha",
        &b.agent_id(&token),
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    let svid = fetch_svid(&agent).await;
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/ha");
    // The workload's bundle holds both CAs, so SVIDs from either server verify.
    let bundles = client(&agent)
        .await
        .fetch_x509_bundles()
        .await
        .expect("bundles");
    let td = spiffe::TrustDomain::new(TD).expect("td");
    assert_eq!(bundles.get(&td).expect("bundle").authorities().len(), 2);
}

/// With the server down the agent keeps serving its cached SVIDs, new clients included, and
/// keeps open streams open; once the server is back, new entries reach workloads again.
#[tokio::test]
async fn the_agent_serves_from_cache_while_the_server_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, agent, agent_id) = stack(dir.path()).await;
    let selector = format!("unix:uid:{}", uid());
    server.create_entry("spiffe://example.org/steady", &agent_id, &[&selector], &[]);
    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("X509Source");

    server.process.kill();
    // A client that connects only now still gets the cached SVID.
    let svid = client(&agent)
        .await
        .fetch_x509_svid()
        .await
        .expect("cached SVID");
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/steady");
    assert_eq!(
        source.svid().expect("svid").spiffe_id().to_string(),
        "spiffe://example.org/steady"
    );

    server.restart().await;
    server.create_entry(
        "spiffe://example.org/added",
        &agent_id,
        &[&selector],
        &["-hint", "added"],
    );
    let ids = wait_for(
        "the new entry after the restart",
        Duration::from_secs(30),
        || async {
            let svids = client(&agent).await.fetch_all_x509_svids().await.ok()?;
            let mut ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
            ids.sort();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    assert_eq!(
        ids,
        ["spiffe://example.org/added", "spiffe://example.org/steady"]
    );
    // The stream opened before the outage is still live.
    assert!(
        source.is_healthy(),
        "the X509Source's stream survived the outage"
    );
}

/// An agent down for longer than its SVID's lifetime cannot re-authenticate with it: without a
/// token it stops and says it needs a new join token; with one it attests afresh.
#[tokio::test]
async fn an_agent_whose_svid_expired_while_down_asks_for_a_new_join_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-agentTTL", "2s"]).await;
    let token = server.join_token(&[]);
    let agent_dir = dir.path().join("agent");
    let mut agent = Agent::start(&server, &agent_dir, Some(&token)).await;
    agent.process.kill();

    // Wait (by the clock, not a fixed sleep) until the stored SVID has expired.
    let pem = std::fs::read(agent.data_dir.join("agent-svid.pem")).expect("stored SVID");
    let der = ::pem::parse(&pem).expect("PEM").into_contents();
    let (_, cert) = X509Certificate::from_der(&der).expect("certificate");
    let not_after = cert.validity().not_after.timestamp();
    wait_for(
        "the stored agent SVID to expire",
        Duration::from_secs(30),
        || async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            (i64::try_from(now).expect("time") > not_after).then_some(())
        },
    )
    .await;

    let bundle = server.write_bundle();
    let mut expired = Agent::spawn(&server, &agent_dir, None, &bundle);
    let status = expired.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = expired.process.log();
    assert!(
        log.contains("expired") && log.contains("new join token"),
        "{log}"
    );

    let fresh = server.join_token(&[]);
    let agent = Agent::start(&server, &agent_dir, Some(&fresh)).await;
    assert!(agent.socket.exists());
}
