//! x509pop node attestation end to end: an agent proves possession of a node certificate
//! issued by a CA the server trusts, gets SPIRE's agent ID and selectors, serves workloads,
//! attests again with no token after losing its SVID, and a certificate from another CA is
//! refused by name.

use std::time::Duration;

use tests::stack::Agent;
use tests::x509pop::{NodePki, node_pki};

fn sha1_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn agents_attest_with_a_node_certificate_and_again_without_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let NodePki {
        ca_path: ca,
        node_cert_der: node_der,
        agent_config,
    } = node_pki(&dir.path().join("pki"), "node-1");
    let server = tests::x509pop::start_server(dir.path(), "example.org", &ca).await;

    let agent_dir = dir.path().join("agent");
    let agent_flags = ["-config", agent_config.to_str().expect("path")];
    let mut agent = Agent::start_with(&server, &agent_dir, None, &agent_flags).await;
    let agent_id = format!(
        "spiffe://example.org/spire/agent/x509pop/{}",
        sha1_hex(&node_der)
    );
    let listed: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["agent", "list", "-output", "json"])).expect("JSON");
    let attested = &listed["agents"][0];
    assert_eq!(attested["id"], agent_id.as_str(), "{listed}");
    assert_eq!(attested["attestation_type"], "x509pop");
    assert_eq!(attested["can_reattest"], true);
    let selectors = tests::stack::selector_strings(attested);
    assert!(
        selectors.contains(&"x509pop:subject:cn:node-1".to_owned()),
        "{selectors:?}"
    );
    let ca_der = pem::parse(std::fs::read(&ca).expect("CA")).expect("PEM");
    assert!(
        selectors.contains(&format!(
            "x509pop:ca:fingerprint:{}",
            sha1_hex(ca_der.contents())
        )),
        "{selectors:?}"
    );
    assert!(
        selectors
            .iter()
            .any(|s| s.starts_with("x509pop:serialnumber:"))
    );

    // Workloads of this node get SVIDs through entries parented to its agent ID.
    let uid = nix::unistd::geteuid().as_raw().to_string();
    server.create_entry(
        "spiffe://example.org/on-node-1",
        &agent_id,
        &[&format!("unix:uid:{uid}")],
        &[],
    );
    let svid = agent.fetch_svid().await;
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/on-node-1"
    );

    // Lose the agent's SVID: it attests again with its certificate, as the same agent.
    agent.process.kill();
    std::fs::remove_dir_all(&agent.data_dir).expect("wipe agent data");
    let agent = Agent::start_with(&server, &agent_dir, None, &agent_flags).await;
    assert!(
        agent.process.log().contains("node attested"),
        "{}",
        agent.process.log()
    );
    let listed = server.cli_ok(&["agent", "list"]);
    assert_eq!(listed.matches("SPIFFE ID").count(), 1, "{listed}");
    assert!(listed.contains(&agent_id), "{listed}");

    // A node certificate from a CA the server does not trust is refused, and says why.
    let untrusted = node_pki(&dir.path().join("other-pki"), "intruder").agent_config;
    let bundle = server.write_bundle();
    let mut intruder = Agent::spawn_with(
        &server,
        &dir.path().join("intruder"),
        None,
        &bundle,
        &["-config", untrusted.to_str().expect("path")],
    );
    let status = intruder.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = intruder.process.log();
    assert!(log.contains("does not chain to a configured CA"), "{log}");
    assert_eq!(
        server
            .cli_ok(&["agent", "list"])
            .matches("SPIFFE ID")
            .count(),
        1,
        "the intruder was not attested"
    );
}
