//! The server's agent API end to end, with the real binaries: who may call it (mTLS with a
//! current agent SVID only), what happens to an agent SVID superseded by a renewal, and what a
//! running agent does when it is evicted (a join-token agent stops for good, an x509pop agent
//! attests again by itself). After every refusal, `agent list` shows exactly the agents that
//! should exist: a refused call writes nothing.

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use spiffe::{WorkloadApiClient, X509Source};
use spire_proto::refusal::{self, Reason};
use spire_proto::server as pb;
use spire_proto::server::agent_client::AgentClient;
use tests::certs::{Ca, Svid};
use tests::stack::{Agent, Server};
use tests::wait_for;
use tonic::Code;
use tonic::transport::Channel;
use x509_parser::prelude::{FromDer, X509Certificate};

const TD: &str = "example.org";

fn uid_selector() -> String {
    format!("unix:uid:{}", nix::unistd::geteuid().as_raw())
}

/// The SVID the agent stores in its data directory.
fn agent_svid(agent: &Agent) -> Svid {
    Svid::read(
        &agent.data_dir.join("agent-svid.pem"),
        &agent.data_dir.join("agent-key.pem"),
    )
}

/// The leaf's serial number, in the form `agent list` prints.
fn serial(svid: &Svid) -> String {
    serial_of(&svid.chain[0])
}

fn serial_of(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate");
    format!("{:x}", cert.tbs_certificate.serial)
}

async fn sync(client: &mut AgentClient<Channel>) -> Result<(), tonic::Status> {
    client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {})
        .await
        .map(|_| ())
}

/// Renews with `client`'s SVID; returns the new SVID.
async fn renew(client: &mut AgentClient<Channel>) -> Result<Svid, tonic::Status> {
    let key = KeyPair::generate().expect("key");
    let csr = CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("CSR");
    let response = client
        .renew_agent(pb::RenewAgentRequest {
            csr: csr.der().to_vec(),
        })
        .await?
        .into_inner();
    Ok(Svid {
        chain: response.svid.expect("SVID").cert_chain,
        key: key.serialize_der(),
    })
}

/// `agent list -output json`: (ID, current serial) of every attested agent.
fn agents(server: &Server) -> Vec<(String, String)> {
    let out = server.cli_ok(&["agent", "list", "-output", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    json["agents"]
        .as_array()
        .expect("agents array")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id").to_owned(),
                a["x509svid_serial_number"]
                    .as_str()
                    .expect("serial")
                    .to_owned(),
            )
        })
        .collect()
}

fn current_serial(server: &Server, agent_id: &str) -> Option<String> {
    agents(server)
        .into_iter()
        .find(|(id, _)| id == agent_id)
        .map(|(_, serial)| serial)
}

fn assert_refused(result: Result<(), tonic::Status>, reason: Reason, text: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(refusal::reason(&status), Some(reason), "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test]
async fn the_agent_api_requires_the_svid_of_an_attested_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    server.create_entry(
        &format!("spiffe://{TD}/app"),
        &agent_id,
        &["unix:uid:1"],
        &[],
    );
    let expected = vec![agent_id.clone()];
    assert_eq!(server.agent_ids(), expected);

    // No client certificate: every agent call is Unauthenticated.
    let mut anonymous = server.agent_api(None);
    let status = sync(&mut anonymous).await.expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = renew(&mut anonymous).await.err().expect("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = anonymous
        .batch_new_x509svid(pb::BatchNewX509SvidRequest { params: vec![] })
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = anonymous
        .new_jwtsvid(pb::NewJwtSvidRequest {
            entry_id: "x".into(),
            audience: vec!["a".into()],
        })
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // A valid workload SVID of this trust domain is not an agent SVID: the server's TLS
    // verifier rejects it (fatal alert), so the call dies on the transport (Unknown) and never
    // reaches the API.
    let minted = dir.path().join("workload");
    std::fs::create_dir_all(&minted).expect("dir");
    server.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        &format!("spiffe://{TD}/workload"),
        "-write",
        minted.to_str().expect("path"),
    ]);
    let workload = Svid::read(&minted.join("svid.pem"), &minted.join("key.pem"));
    let status = sync(&mut server.agent_api(Some(&workload)))
        .await
        .expect_err("a workload SVID");
    // The alert ends the connection; the client reports it as Unknown "transport error" or,
    // if the connection closed first, Cancelled. Either way no API status came back.
    assert!(
        matches!(status.code(), Code::Unknown | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        refusal::reason(&status).is_none(),
        "the API never saw it: {status:?}"
    );

    // An agent-shaped SVID of an agent that never attested is refused. The admin cannot mint
    // one (the /spire namespace is reserved), so it is signed here with the server's CA key.
    let forged_id = format!("spiffe://{TD}/spire/agent/join_token/never-attested");
    let forged = Ca::of_server(&server).sign(&forged_id);
    let mut forged = server.agent_api(Some(&forged));
    assert_refused(
        sync(&mut forged).await,
        Reason::AgentNotAttested,
        &format!("agent \"{forged_id}\" is not attested"),
    );
    assert_refused(
        renew(&mut forged).await.map(|_| ()),
        Reason::AgentNotAttested,
        "is not attested",
    );

    // The attested agent's own SVID works.
    sync(&mut server.agent_api(Some(&agent_svid(&agent))))
        .await
        .expect("the agent's SVID");
    assert_eq!(server.agent_ids(), expected, "refusals wrote nothing");
}

/// Driven by hand with the agent's stored SVID: a renewed SVID is pending until first used,
/// the old one keeps working until then, and is refused from then on.
#[tokio::test]
async fn an_agent_svid_superseded_by_renewal_is_refused_once_the_new_one_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let mut agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    // The agent's own SVID, used from here on by this test alone.
    let old = agent_svid(&agent);
    agent.process.kill();
    assert_eq!(current_serial(&server, &agent_id), Some(serial(&old)));

    let mut with_old = server.agent_api(Some(&old));
    let new = renew(&mut with_old).await.expect("renewal");
    assert_ne!(serial(&new), serial(&old));
    // Not in use yet: the old SVID stays current and keeps working.
    assert_eq!(current_serial(&server, &agent_id), Some(serial(&old)));
    sync(&mut with_old)
        .await
        .expect("old SVID before the new one is used");

    let mut with_new = server.agent_api(Some(&new));
    sync(&mut with_new).await.expect("new SVID");
    assert_eq!(current_serial(&server, &agent_id), Some(serial(&new)));
    let superseded = format!(
        "expected to have serial number \"{}\"; has \"{}\"",
        serial(&new),
        serial(&old)
    );
    assert_refused(
        sync(&mut server.agent_api(Some(&old))).await,
        Reason::AgentNotActive,
        &superseded,
    );
    assert_refused(
        renew(&mut with_old).await.map(|_| ()),
        Reason::AgentNotActive,
        &superseded,
    );
    sync(&mut with_new).await.expect("the new SVID still works");
    assert_eq!(
        agents(&server),
        vec![(agent_id, serial(&new))],
        "the refusals changed nothing"
    );
}

/// The running agent renews by itself (short agent TTL); once it uses its new SVID, the SVID it
/// had before is refused.
#[tokio::test]
async fn a_live_agent_renewal_retires_its_previous_svid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-agentTTL", "20s"]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    let old = agent_svid(&agent);
    let new_serial = wait_for(
        "the agent to renew and use its new SVID",
        Duration::from_secs(30),
        || {
            let renewed = current_serial(&server, &agent_id).filter(|s| *s != serial(&old));
            async move { renewed }
        },
    )
    .await;
    assert_eq!(serial(&agent_svid(&agent)), new_serial, "stored SVID");
    assert_refused(
        sync(&mut server.agent_api(Some(&old))).await,
        Reason::AgentNotActive,
        "expected to have serial number",
    );
    sync(&mut server.agent_api(Some(&agent_svid(&agent))))
        .await
        .expect("the renewed SVID");
}

#[tokio::test]
async fn an_evicted_join_token_agent_removes_its_svid_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent_dir = dir.path().join("agent");
    let mut agent = Agent::start(&server, &agent_dir, Some(&token)).await;
    let agent_id = server.agent_id(&token);
    server.create_entry(
        &format!("spiffe://{TD}/app"),
        &agent_id,
        &[&uid_selector()],
        &[],
    );
    agent.fetch_svid().await;

    server.cli_ok(&["agent", "evict", "-spiffeID", &agent_id]);
    let status = agent.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{status}");
    let log = agent.process.log();
    assert!(
        log.contains("Agent needs to re-attest; removing SVID and shutting down"),
        "{log}"
    );
    assert!(
        log.contains("new join token") && log.contains("is not attested"),
        "{log}"
    );
    assert!(
        !agent.data_dir.join("agent-svid.pem").exists(),
        "SVID removed"
    );
    assert!(
        !agent.data_dir.join("agent-key.pem").exists(),
        "key removed"
    );
    assert_eq!(server.agent_ids(), Vec::<String>::new());

    // A restart without a token has nothing to present and no way to attest.
    let bundle = server.write_bundle();
    let mut restarted = Agent::spawn(&server, &agent_dir, None, &bundle);
    let status = restarted.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{status}");
    let log = restarted.process.log();
    assert!(log.contains("no join token"), "{log}");
    // The old token cannot bring it back either: it was used up.
    let mut reused = Agent::spawn(&server, &agent_dir, Some(&token), &bundle);
    let status = reused.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{status}");
    assert_eq!(server.agent_ids(), Vec::<String>::new());
}

#[tokio::test]
async fn an_evicted_x509pop_agent_attests_again_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tests::x509pop::NodePki {
        ca_path: ca,
        agent_config,
        ..
    } = tests::x509pop::node_pki(&dir.path().join("pki"), "node");
    let server = tests::x509pop::start_server(dir.path(), TD, &ca).await;
    let mut agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        None,
        &["-config", agent_config.to_str().expect("path")],
    )
    .await;
    let [(agent_id, first_serial)]: [(String, String); 1] =
        agents(&server).try_into().expect("one agent");
    assert!(agent_id.starts_with(&format!("spiffe://{TD}/spire/agent/x509pop/")));
    server.create_entry(
        &format!("spiffe://{TD}/steady"),
        &agent_id,
        &[&uid_selector()],
        &[],
    );
    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("X509Source");
    let old = agent_svid(&agent);

    server.cli_ok(&["agent", "evict", "-spiffeID", &agent_id]);
    // The server records the new serial before it answers, so the agent's log line comes
    // after: wait for both.
    let second_serial = wait_for("the agent to attest again", Duration::from_secs(20), || {
        let serial = current_serial(&server, &agent_id)
            .filter(|s| *s != first_serial && agent.process.log().contains("node attested again"));
        async move { serial }
    })
    .await;
    assert_eq!(server.agent_ids(), vec![agent_id.clone()]);
    assert!(
        agent.process.try_exit().is_none(),
        "{}",
        agent.process.log()
    );
    let log = agent.process.log();
    assert!(log.contains("node attested again"), "{log}");
    assert!(!log.contains("shutting down"), "{log}");
    assert_eq!(serial(&agent_svid(&agent)), second_serial);
    // The SVID from before the eviction belongs to a record that no longer exists.
    assert_refused(
        sync(&mut server.agent_api(Some(&old))).await,
        Reason::AgentNotActive,
        "expected to have serial number",
    );

    // Workloads kept their identity, and the agent syncs again: a new entry reaches them.
    assert_eq!(
        source.svid().expect("SVID").spiffe_id().to_string(),
        format!("spiffe://{TD}/steady")
    );
    server.create_entry(
        &format!("spiffe://{TD}/added"),
        &agent_id,
        &[&uid_selector()],
        &["-hint", "added"],
    );
    let endpoint = agent.endpoint();
    let ids = wait_for(
        "the entry added after re-attestation",
        Duration::from_secs(20),
        || {
            let endpoint = endpoint.clone();
            async move {
                let svids = WorkloadApiClient::connect_to(endpoint)
                    .await
                    .ok()?
                    .fetch_all_x509_svids()
                    .await
                    .ok()?;
                let mut ids: Vec<String> =
                    svids.iter().map(|s| s.spiffe_id().to_string()).collect();
                ids.sort();
                (ids.len() == 2).then_some(ids)
            }
        },
    )
    .await;
    assert_eq!(
        ids,
        [
            format!("spiffe://{TD}/added"),
            format!("spiffe://{TD}/steady")
        ]
    );
    assert!(source.is_healthy());
}
