//! A keeper over real mTLS: Nexus's SVID may store and fetch the shard, any other SVID is
//! refused at the handshake.

use std::sync::Arc;
use std::time::Duration;

use spiffe::X509Source;
use tests::stack::{Agent, Process, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "example.org";

/// Sends one HTTP/1.1 POST over an mTLS connection presenting this process's SVID.
async fn post(source: &X509Source, port: u16, path: &str, body: &str) -> std::io::Result<String> {
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let keeper = identity::SpiffeId::new("spiffe://example.org/spike/keeper/k1").expect("id");
    let config =
        identity::workload::client_config(source.clone(), td, identity::workload::exactly(keeper))
            .expect("client config");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: keeper\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn keeper_serves_nexus_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    let uid = format!("unix:uid:{}", nix::unistd::geteuid());
    let path_of =
        |p: std::path::PathBuf| format!("unix:path:{}", p.canonicalize().expect("path").display());
    let keeper_bin = tests::bin("keeper");
    let me = std::env::current_exe().expect("exe");
    server.create_entry(
        "spiffe://example.org/spike/keeper/k1",
        &agent_id,
        &[&uid, &path_of(keeper_bin.clone())],
        &[],
    );
    server.create_entry(
        "spiffe://example.org/spike/nexus",
        &agent_id,
        &[&uid, &path_of(me)],
        &[],
    );
    server.create_entry(
        "spiffe://example.org/app/other",
        &agent_id,
        &[&uid, &path_of(tests::bin("mtls-peer"))],
        &[],
    );

    let mut cmd = std::process::Command::new(&keeper_bin);
    cmd.args(["--listen", tests::ANY_PORT, "--trust-domain", TD])
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint());
    let mut keeper = Process::spawn(cmd, dir.path().join("keeper.log"));
    let port = keeper.logged_address("keeper ready").await.port();

    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("Nexus's X509Source");
    let shard: Vec<u8> = (10..42).collect();
    let body = serde_json::json!({ "shard": shard }).to_string();
    let stored = tests::wait_for(
        "the keeper to accept the shard",
        Duration::from_secs(30),
        || async {
            post(&source, port, "/v1/store/contribute", &body)
                .await
                .ok()
        },
    )
    .await;
    assert!(stored.starts_with("HTTP/1.1 200"), "{stored}");
    assert!(
        stored.to_lowercase().contains("cache-control: no-store"),
        "{stored}"
    );
    let fetched = post(&source, port, "/v1/store/shard", "{}")
        .await
        .expect("fetch");
    assert!(fetched.starts_with("HTTP/1.1 200"), "{fetched}");
    assert!(
        fetched.contains(&serde_json::json!(shard).to_string()),
        "{fetched}"
    );

    // Another workload of the same trust domain is refused during the handshake.
    let output = tokio::process::Command::new(tests::bin("mtls-peer"))
        .args([
            format!("127.0.0.1:{port}"),
            "spiffe://example.org/spike/keeper/k1".into(),
        ])
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()
        .await
        .expect("mtls-peer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a non-Nexus caller must be refused: {stdout}"
    );
    assert!(!stdout.contains("seen-as="), "{stdout}");
}
