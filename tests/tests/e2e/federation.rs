//! Static federation between two trust domains on one machine: two servers, two agents; a
//! workload in each, mTLS between them through the bundles exchanged with `bundle show` /
//! `bundle set`, JWT-SVIDs of one validated with the other's JWT bundle, and refusal once the
//! federation is removed.

use std::time::Duration;

use spiffe::{JwtSvid, TrustDomain, WorkloadApiClient, X509Source};
use tests::mtls::handshake;
use tests::stack::{Agent, Server};
use tests::wait_for;

const FRONT: &str = "spiffe://example.org/front";
const BACK: &str = "spiffe://other.org/back";

async fn source(agent: &Agent) -> X509Source {
    identity::workload::x509_source(Some(&agent.endpoint()), Duration::from_secs(20))
        .await
        .expect("X509Source")
}

#[tokio::test]
async fn two_trust_domains_federate_and_stop_trusting_each_other_when_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a"), "example.org", &[]).await;
    let b = Server::start(&dir.path().join("b"), "other.org", &[]).await;
    let token_a = a.join_token(&[]);
    let token_b = b.join_token(&[]);
    let agent_a = Agent::start(&a, &dir.path().join("agent-a"), Some(&token_a)).await;
    let agent_b = Agent::start(&b, &dir.path().join("agent-b"), Some(&token_b)).await;
    let uid = format!("unix:uid:{}", nix::unistd::geteuid().as_raw());
    a.create_entry(
        FRONT,
        &a.agent_id(&token_a),
        &[&uid],
        &["-federatesWith", "spiffe://other.org"],
    );
    b.create_entry(
        BACK,
        &b.agent_id(&token_b),
        &[&uid],
        &["-federatesWith", "spiffe://example.org"],
    );

    let shown = a.cli_ok(&["entry", "show", "-federatesWith", "spiffe://other.org"]);
    assert!(shown.starts_with("Found 1 entry"), "{shown}");
    let shown = a.cli_ok(&["entry", "show", "-federatesWith", "third.org"]);
    assert!(shown.starts_with("Found 0 entries"), "{shown}");

    // Bad input is refused by name.
    let own = a.cli(&[
        "bundle",
        "set",
        "-id",
        "spiffe://example.org",
        "-path",
        "/dev/null",
    ]);
    assert!(!own.status.success());
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"keys\": 3}").expect("write");
    let out = a.cli(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-format",
        "spiffe",
        "-path",
        garbage.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid bundle"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = a.cli(&[
        "bundle",
        "set",
        "-id",
        "spiffe://example.org",
        "-format",
        "spiffe",
    ]);
    assert!(!out.status.success(), "own trust domain refused");

    // Exchange bundles in SPIFFE format, as operators do.
    for (from, to, id) in [
        (&a, &b, "spiffe://example.org"),
        (&b, &a, "spiffe://other.org"),
    ] {
        let path = dir.path().join(format!("{}.json", from.trust_domain));
        std::fs::write(&path, from.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("write bundle");
        let out = to.cli_ok(&[
            "bundle",
            "set",
            "-id",
            id,
            "-format",
            "spiffe",
            "-path",
            path.to_str().expect("path"),
        ]);
        assert!(out.contains("bundle set"), "{out}");
    }
    let listed = a.cli_ok(&[
        "bundle",
        "list",
        "-format",
        "spiffe",
        "-id",
        "spiffe://other.org",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let from_b: serde_json::Value =
        serde_json::from_str(&b.cli_ok(&["bundle", "show", "-format", "spiffe"])).expect("JSON");
    assert_eq!(
        listed["keys"], from_b["keys"],
        "A stores B's bundle as B publishes it"
    );

    let front = source(&agent_a).await;
    let back = source(&agent_b).await;
    let other = TrustDomain::new("other.org").expect("td");
    let example = TrustDomain::new("example.org").expect("td");
    for (workload, td) in [(&front, &other), (&back, &example)] {
        wait_for(
            &format!("{td}'s bundle at the other workload"),
            Duration::from_secs(20),
            || {
                let found = workload.try_bundle_for_trust_domain(td).map(|_| ());
                async move { found }
            },
        )
        .await;
    }

    let seen = handshake(&front, FRONT, &back, BACK)
        .await
        .expect("federated mTLS");
    assert_eq!(seen, BACK);

    // `spire-agent api fetch x509 -write` leaves SPIRE's files, the federated bundle included,
    // and `api watch` prints the same SVID.
    let written = dir.path().join("written");
    std::fs::create_dir(&written).expect("mkdir");
    let out = std::process::Command::new(tests::bin("spire-agent"))
        .args(["api", "fetch", "x509", "-socketPath"])
        .arg(&agent_a.socket)
        .arg("-write")
        .arg(&written)
        .output()
        .expect("spire-agent api fetch x509");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("SPIFFE ID:\t\t{FRONT}")),
        "{stdout}"
    );
    assert!(stdout.contains("[spiffe://other.org] CA #1"), "{stdout}");
    let file = |name: &str| written.join(name);
    let mode = |name: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(file(name)).expect(name).permissions(),
        ) & 0o777
    };
    assert_eq!(mode("svid.0.key"), 0o600);
    let svid_pem = std::fs::read_to_string(file("svid.0.pem")).expect("svid.0.pem");
    let leaf = pem::parse(&svid_pem).expect("PEM");
    assert_eq!(
        identity::peer::spiffe_id_from_cert(leaf.contents())
            .expect("SPIFFE ID")
            .to_string(),
        FRONT
    );
    let key = std::fs::read_to_string(file("svid.0.key")).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
    let federated = std::fs::read_to_string(file("federated_bundle.0.0.pem")).expect("federated");
    let b_cas = b.cli_ok(&["bundle", "show"]);
    assert_eq!(federated.trim(), b_cas.trim(), "B's CAs, as B shows them");
    assert!(file("bundle.0.pem").exists());

    let mut watch = tests::stack::Process::spawn(
        {
            let mut cmd = std::process::Command::new(tests::bin("spire-agent"));
            cmd.args(["api", "watch", "-socketPath"])
                .arg(&agent_a.socket);
            cmd
        },
        dir.path().join("watch.log"),
    );
    wait_for("`api watch` output", Duration::from_secs(20), || {
        let log = watch.log();
        let done = log
            .contains(&format!("SPIFFE ID:\t\t{FRONT}"))
            .then_some(());
        async move { done }
    })
    .await;
    assert!(
        watch.log().starts_with("Received 1 svid after"),
        "{}",
        watch.log()
    );
    watch.kill();

    // A JWT-SVID from B validates offline with the JWT bundles A's agent serves to its
    // workload, and through A's agent.
    let token = WorkloadApiClient::connect_to(agent_b.endpoint())
        .await
        .expect("B's Workload API")
        .fetch_jwt_token(["front"], None)
        .await
        .expect("JWT-SVID from B");
    let client_a = WorkloadApiClient::connect_to(agent_a.endpoint())
        .await
        .expect("A's Workload API");
    let bundles = client_a
        .fetch_jwt_bundles()
        .await
        .expect("JWT bundles at A");
    let svid = JwtSvid::parse_and_validate(&token, &bundles, &["front"]).expect("valid at A");
    assert_eq!(svid.spiffe_id().to_string(), BACK);
    let validated = client_a
        .validate_jwt_token("front", &token)
        .await
        .expect("A's agent validates B's token");
    assert_eq!(validated.spiffe_id().to_string(), BACK);

    // Removing the federation at A: A's workload drops B's bundle and refuses B.
    let out = a.cli_ok(&["bundle", "delete", "-id", "spiffe://other.org"]);
    assert!(out.contains("bundle deleted"), "{out}");
    let out = a.cli(&["bundle", "delete", "-id", "spiffe://other.org"]);
    assert!(!out.status.success(), "deleting twice is NotFound");
    wait_for(
        "B's bundle gone at A's workload",
        Duration::from_secs(20),
        || {
            let gone = front
                .try_bundle_for_trust_domain(&other)
                .is_none()
                .then_some(());
            async move { gone }
        },
    )
    .await;
    let refused = handshake(&front, FRONT, &back, BACK)
        .await
        .expect_err("no longer federated");
    assert!(!refused.is_empty());
    assert!(
        client_a.validate_jwt_token("front", &token).await.is_err(),
        "A's agent no longer validates B's tokens"
    );
}

#[tokio::test]
async fn a_bundle_endpoint_keeps_the_federated_bundle_current_across_ca_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_config = dir.path().join("a.toml");
    std::fs::write(
        &a_config,
        "[server.federation.bundle_endpoint]\naddress = \"127.0.0.1\"\nport = 0\n\
         refresh_hint = \"1s\"\n",
    )
    .expect("write config");
    let mut a = Server::start(
        &dir.path().join("a"),
        "example.org",
        &[
            "-config",
            a_config.to_str().expect("path"),
            "-caTTL",
            "30s",
            "-defaultX509SVIDTTL",
            "20s",
        ],
    )
    .await;
    let endpoint = a.process.logged_address("bundle endpoint ready").await;
    let b_config = dir.path().join("b.toml");
    std::fs::write(
        &b_config,
        format!(
            "[server.federation.federates_with.\"example.org\"]\n\
             bundle_endpoint_url = \"https://{endpoint}\"\n\
             bundle_endpoint_profile = \"https_spiffe\"\n\
             endpoint_spiffe_id = \"spiffe://example.org/spire/server\"\n"
        ),
    )
    .expect("write config");
    let b = Server::start(
        &dir.path().join("b"),
        "other.org",
        &["-config", b_config.to_str().expect("path")],
    )
    .await;

    // Bootstrap: B gets A's bundle once from the operator, then from the endpoint.
    let first = a.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let path = dir.path().join("a.json");
    std::fs::write(&path, &first).expect("write");
    b.cli_ok(&[
        "bundle",
        "set",
        "-id",
        "spiffe://example.org",
        "-format",
        "spiffe",
        "-path",
        path.to_str().expect("path"),
    ]);
    assert_eq!(tests::bundle_cas(&first).len(), 1);

    // A prepares its next CA about 10 s after it started; B's copy follows it, and later
    // drops the first CA once A prunes it.
    let at_b = || {
        tests::bundle_cas(&b.cli_ok(&[
            "bundle",
            "list",
            "-format",
            "spiffe",
            "-id",
            "spiffe://example.org",
        ]))
    };
    let rotated = wait_for("B to fetch A's next CA", Duration::from_secs(60), || {
        let (at_a, at_b) = (
            tests::bundle_cas(&a.cli_ok(&["bundle", "show", "-format", "spiffe"])),
            at_b(),
        );
        let done = (at_a.len() > 1 && at_a == at_b).then_some(at_b);
        async move { done }
    })
    .await;
    assert!(rotated.contains(&tests::bundle_cas(&first)[0]));
    wait_for("B to drop A's expired CA", Duration::from_secs(60), || {
        let done = (!at_b().contains(&tests::bundle_cas(&first)[0])).then_some(());
        async move { done }
    })
    .await;
}
