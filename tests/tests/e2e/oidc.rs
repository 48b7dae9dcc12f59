//! OIDC discovery: a relying party that knows nothing but the discovery URL (PyJWT's
//! `PyJWKClient`, `tests/python/oidc_verify.py`) verifies JWT-SVIDs from our agent, before and
//! after a JWT key rotation; the endpoint answers only its domains, over TLS with a configured
//! certificate or as plain HTTP behind a proxy.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use spiffe::WorkloadApiClient;
use tests::stack::{Agent, Server};
use tests::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/oidc-client";

/// A CA and a `localhost` serving certificate under it: (cert chain file, key file, CA file).
fn serving_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cert = tests::web_pki::serving_cert(dir, "oidc");
    (cert.cert_path, cert.key_path, cert.ca_path)
}

/// The Python relying party, one line per token.
struct RelyingParty {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl RelyingParty {
    fn start(discovery_url: &str, ca: &Path) -> RelyingParty {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/oidc_verify.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(discovery_url)
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (PyJWT from examples/python/requirements.txt)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        RelyingParty {
            child,
            stdin,
            stdout,
        }
    }

    /// What the relying party says of `token` for `audience`.
    fn verify(&mut self, audience: &str, token: &str) -> String {
        writeln!(self.stdin, "{audience} {token}").expect("write token");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read answer");
        assert!(
            !line.is_empty(),
            "the relying party exited (is PyJWT installed? python3 -m pip install -r \
             examples/python/requirements.txt)"
        );
        line.trim().to_owned()
    }
}

impl Drop for RelyingParty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn jwt_for(agent: &Agent, audience: &str) -> (String, String) {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("Workload API");
    let svid = client
        .fetch_jwt_svid(&[audience], None)
        .await
        .expect("JWT-SVID");
    (svid.token().to_owned(), svid.key_id().to_owned())
}

#[tokio::test]
async fn a_jwt_svid_verifies_through_discovery_alone_and_after_a_key_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).expect("dir");
    let (cert, key, ca) = serving_cert(dir.path());
    let config = server_dir.join("server.toml");
    let write_config = |port: u16| {
        std::fs::write(
            &config,
            format!(
                "[server]\njwt_issuer = \"https://localhost:{port}\"\n[server.oidc_discovery]\n\
                 address = \"127.0.0.1\"\nport = {port}\ndomains = [\"localhost\"]\n\
                 [server.oidc_discovery.serving_cert_file]\ncert_file_path = {:?}\n\
                 key_file_path = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .expect("config");
    };
    write_config(0);
    let mut server = Server::start(
        &server_dir,
        TD,
        &[
            "-config",
            config.to_str().expect("UTF-8"),
            "-caTTL",
            "12s",
            "-defaultX509SVIDTTL",
            "4s",
        ],
    )
    .await;
    // The issuer names the discovery port, which is known once the server has bound it: write
    // it into the config and restart on that port before any token is issued.
    let port = server
        .process
        .logged_address("OIDC discovery ready")
        .await
        .port();
    write_config(port);
    server.restart().await;
    let issuer = format!("https://localhost:{port}");
    let agent = Agent::start_for_workload(&server, &dir.path().join("agent"), WORKLOAD).await;
    agent.fetch_svid().await;

    let mut party = RelyingParty::start(&format!("{issuer}/.well-known/openid-configuration"), &ca);
    let (first, first_kid) = jwt_for(&agent, "oidc-api").await;
    assert_eq!(
        party.verify("oidc-api", &first),
        format!("ok {WORKLOAD} {first_kid}")
    );
    // The relying party checks what it should: the audience, and the signature.
    let wrong = party.verify("other-api", &first);
    assert!(wrong.starts_with("error InvalidAudienceError"), "{wrong}");
    let mut forged = first.clone();
    forged.pop();
    forged.push(if first.ends_with('A') { 'B' } else { 'A' });
    let forged = party.verify("oidc-api", &forged);
    assert!(forged.starts_with("error"), "{forged}");

    // After the JWT key rotates, a token signed by the new key verifies through the same
    // client, which finds the new kid by fetching the keys again.
    let mut round = 0u32;
    let (rotated, rotated_kid) = wait_for(
        "a JWT-SVID from the next key",
        Duration::from_secs(40),
        || {
            round += 1;
            let agent = &agent;
            let first_kid = first_kid.clone();
            async move {
                let (token, kid) = jwt_for(agent, &format!("oidc-api-{round}")).await;
                (kid != first_kid).then_some((token, kid))
            }
        },
    )
    .await;
    let audience = format!("oidc-api-{round}");
    assert_eq!(
        party.verify(&audience, &rotated),
        format!("ok {WORKLOAD} {rotated_kid}")
    );
}

/// `GET path` with `Host: host` over plain HTTP: (status line, body).
async fn get_with_host(address: &str, host: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        tests::dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

#[tokio::test]
async fn plain_http_behind_a_proxy_answers_only_its_domains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).expect("dir");
    let config = server_dir.join("server.toml");
    std::fs::write(
        &config,
        "[server.oidc_discovery]\naddress = \"127.0.0.1\"\nport = 0\n\
         domains = [\"oidc.example.org\"]\nallow_insecure_scheme = true\n",
    )
    .expect("config");
    let mut server = Server::start(
        &server_dir,
        TD,
        &["-config", config.to_str().expect("UTF-8")],
    )
    .await;
    let address = server
        .process
        .logged_address("OIDC discovery ready")
        .await
        .to_string();

    let (status, body) = get_with_host(
        &address,
        "oidc.example.org",
        "/.well-known/openid-configuration",
    )
    .await;
    assert!(status.contains("200"), "{status}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["issuer"], "http://oidc.example.org");
    assert_eq!(doc["jwks_uri"], "http://oidc.example.org/keys");
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "ES256");

    let (status, body) = get_with_host(&address, "OIDC.example.org:443", "/keys").await;
    assert!(status.contains("200"), "{status}");
    let keys: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let keys = keys["keys"].as_array().expect("keys");
    let bundle: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("bundle JSON");
    let jwt_kids: Vec<&str> = bundle["keys"]
        .as_array()
        .expect("bundle keys")
        .iter()
        .filter(|k| k["use"] == "jwt-svid")
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(keys.len(), jwt_kids.len());
    for key in keys {
        assert!(jwt_kids.contains(&key["kid"].as_str().expect("kid")));
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
    }

    for (host, path) in [
        ("evil.org", "/.well-known/openid-configuration"),
        ("evil.org", "/keys"),
        ("oidc.example.org.evil.org", "/keys"),
    ] {
        let (status, _) = get_with_host(&address, host, path).await;
        assert!(status.contains("404"), "{host}{path}: {status}");
    }
    let (status, _) = get_with_host(&address, "oidc.example.org", "/other").await;
    assert!(status.contains("404"), "{status}");

    // Neither TLS nor an explicit plain-HTTP choice: refused with the reason.
    std::fs::write(
        &config,
        "[server.oidc_discovery]\ndomains = [\"oidc.example.org\"]\n",
    )
    .expect("config");
    let out = Command::new(tests::bin("spire-server"))
        .args(["run", "-trustDomain", TD, "-config"])
        .arg(&config)
        .output()
        .expect("spire-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("allow_insecure_scheme"), "{stderr}");
}
