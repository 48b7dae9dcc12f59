//! The CA and JWT keys in a PKCS#11 token (SoftHSM2), never on disk: the server generates them
//! in the token, signs SVIDs and JWT-SVIDs there, rotates them on schedule, and after a restart
//! finds them again by label. OpenSC's `pkcs11-tool` (a PKCS#11 client nobody here wrote)
//! confirms what the token holds, and `openssl verify` that what was signed verifies.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::dn::issuer;
use spiffe::WorkloadApiClient;
use tests::softhsm::{SoftHsm, USER_PIN};
use tests::stack::{Agent, Server};
use tests::wait_for;

const TD: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/hsm-signed";
const PIN_ENV: &str = "SPIKE_TEST_PKCS11_PIN";

/// `x509 mint -write` into `dir`, then `openssl verify` of the SVID against the bundle.
fn mint_and_verify_with_openssl(server: &Server, dir: &Path) {
    std::fs::create_dir_all(dir).expect("mint dir");
    let dir_arg = dir.to_str().expect("UTF-8 path");
    server.cli_ok(&["x509", "mint", "-spiffeID", WORKLOAD, "-write", dir_arg]);
    tests::openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        dir.join("bundle.pem").as_os_str(),
        dir.join("svid.pem").as_os_str(),
    ]);
}

async fn start_hsm_server(dir: &Path, hsm: &SoftHsm, extra: &[&str]) -> Server {
    std::fs::create_dir_all(dir).expect("server dir");
    let config = dir.join("server.toml");
    std::fs::write(&config, hsm.server_config(PIN_ENV)).expect("config");
    let mut args = vec!["-config", config.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    let conf = hsm.conf.to_str().expect("UTF-8 path");
    Server::start_with_env(
        dir,
        TD,
        &args,
        &[("SOFTHSM2_CONF", conf), (PIN_ENV, USER_PIN)],
    )
    .await
}

/// The kid in a compact JWT's header.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.trim().split('.').next().expect("JWT header");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let header: serde_json::Value = serde_json::from_slice(&header).expect("JSON header");
    header["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn pkcs11_keys_stay_in_the_token_and_are_found_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hsm = SoftHsm::create(&dir.path().join("hsm"), "spire-ca");
    let server_dir = dir.path().join("server");
    let mut server = start_hsm_server(&server_dir, &hsm, &[]).await;

    // The private keys are in the token, sensitive and never extractable; none is on disk.
    let data = server_dir.join("data");
    for file in ["ca-key.pem", "jwt-key.pem"] {
        assert!(!data.join(file).exists(), "{file} must not exist");
    }
    assert!(data.join("ca-cert.pem").exists());
    let objects = hsm.list_objects();
    for label in [
        "spire-server/example.org/ca-key",
        "spire-server/example.org/jwt-key",
    ] {
        assert!(objects.contains(label), "{label} in the token:\n{objects}");
    }
    assert!(objects.contains("never extractable"), "{objects}");

    // SVIDs and JWT-SVIDs signed in the token verify with independent clients.
    mint_and_verify_with_openssl(&server, &dir.path().join("mint-1"));
    let agent = Agent::start_for_workload(&server, &dir.path().join("agent"), WORKLOAD).await;
    let first = agent.fetch_svid().await;
    let first_jwt = agent.validated_jwt("hsm").await;

    // A restart finds the keys by label: same CA, same JWT key, still signing. A stray key
    // under the CA's label (what a crash in the middle of a rotation's rename leaves) is told
    // apart by its public key and removed.
    hsm.generate_stray_key("spire-server/example.org/ca-key");
    assert_ne!(hsm.list_objects(), objects);
    let cert_before = std::fs::read(data.join("ca-cert.pem")).expect("CA cert");
    server.restart().await;
    assert_eq!(
        std::fs::read(data.join("ca-cert.pem")).expect("CA cert"),
        cert_before,
        "the restarted server uses the CA it had"
    );
    assert_eq!(hsm.list_objects(), objects, "no key was added or lost");
    mint_and_verify_with_openssl(&server, &dir.path().join("mint-2"));
    let minted = server.cli_ok(&["jwt", "mint", "-spiffeID", WORKLOAD, "-audience", "again"]);
    assert_eq!(
        kid_of(&minted),
        first_jwt.key_id(),
        "the same JWT key signs"
    );
    let after = agent.validated_jwt("after-restart").await;
    assert_eq!(after.key_id(), first_jwt.key_id());
    let svid = agent.fetch_svid().await;
    assert_eq!(
        issuer(svid.leaf().as_bytes()),
        issuer(first.leaf().as_bytes()),
        "the agent's SVIDs still come from the same CA"
    );
}

#[tokio::test]
async fn pkcs11_keys_rotate_inside_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hsm = SoftHsm::create(&dir.path().join("hsm"), "spire-ca");
    let server_dir = dir.path().join("server");
    let server = start_hsm_server(
        &server_dir,
        &hsm,
        &["-caTTL", "12s", "-defaultX509SVIDTTL", "4s"],
    )
    .await;
    let agent = Agent::start_for_workload(&server, &dir.path().join("agent"), WORKLOAD).await;
    let first = agent.fetch_svid().await;
    let first_issuer = issuer(first.leaf().as_bytes());
    let first_jwt = agent.validated_jwt("hsm").await;
    let first_cas = server.stored_cas();

    // The prepared CA (a new key in the token) takes over, and SVIDs follow it.
    wait_for("SVIDs from the rotated CA", Duration::from_secs(40), || {
        let endpoint = agent.endpoint();
        let first_issuer = first_issuer.clone();
        async move {
            let client = WorkloadApiClient::connect_to(endpoint).await.ok()?;
            let svid = client.fetch_x509_svid().await.ok()?;
            (issuer(svid.leaf().as_bytes()) != first_issuer).then_some(())
        }
    })
    .await;
    assert_ne!(
        server.stored_cas(),
        first_cas,
        "the bundle follows rotation"
    );
    wait_for("a JWT key rotation", Duration::from_secs(20), || {
        let agent = &agent;
        let kid = first_jwt.key_id().to_owned();
        async move { (agent.validated_jwt("hsm-rotated").await.key_id() != kid).then_some(()) }
    })
    .await;
    mint_and_verify_with_openssl(&server, &dir.path().join("mint"));
    let data = server_dir.join("data");
    for file in [
        "ca-key.pem",
        "ca-next-key.pem",
        "jwt-key.pem",
        "jwt-next-key.pem",
    ] {
        assert!(
            !data.join(file).exists(),
            "rotation stays in the token: {file}"
        );
    }
}

#[tokio::test]
async fn a_wrong_pin_or_token_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hsm = SoftHsm::create(&dir.path().join("hsm"), "spire-ca");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).expect("dir");
    let config = server_dir.join("server.toml");
    for (table, pin, expected) in [
        (hsm.server_config(PIN_ENV), "wrong-pin", "logging in"),
        (
            hsm.server_config(PIN_ENV)
                .replace("spire-ca", "no-such-token"),
            USER_PIN,
            "no initialized token labelled \"no-such-token\"",
        ),
        (
            hsm.server_config("SPIKE_TEST_UNSET_PIN_VARIABLE"),
            USER_PIN,
            "SPIKE_TEST_UNSET_PIN_VARIABLE, which is not set",
        ),
    ] {
        std::fs::write(&config, table).expect("config");
        let out = Command::new(tests::bin("spire-server"))
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env(PIN_ENV, pin)
            .args(["run", "-trustDomain", TD, "-bindAddress", "127.0.0.1"])
            .args(["-serverPort", "0"])
            .arg("-config")
            .arg(&config)
            .arg("-dataDir")
            .arg(server_dir.join("data"))
            .arg("-socketPath")
            .arg(server_dir.join("admin.sock"))
            .output()
            .expect("running spire-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "must refuse to start: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} in: {stderr}");
        assert!(!stderr.contains(USER_PIN), "the PIN is never printed");
        assert!(!server_dir.join("data/ca-cert.pem").exists());
        assert!(!server_dir.join("data/ca-key.pem").exists());
    }
    assert!(!hsm.list_objects().contains("spire-server/"), "no key made");
}
