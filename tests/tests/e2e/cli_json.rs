//! `-output json` for scripts: the bundle commands of `spire-server` and every printing
//! command of `spire-agent` print one JSON document in SPIRE's shapes (protobuf JSON field
//! names, bytes in base64), with the same content the pretty output shows. (The entry,
//! agent and federation commands' JSON is checked in `admin_cli.rs`, `identity.rs` and
//! `runtime_federation.rs`.)

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tests::stack::{Agent, Process, Server};
use tests::{bin, json, wait_for};

const TD: &str = "example.org";
const APP: &str = "spiffe://example.org/app";

fn b64(value: &Value) -> Vec<u8> {
    BASE64
        .decode(value.as_str().expect("a base64 string"))
        .expect("standard base64")
}

fn agent_json(agent: &Agent, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend_from_slice(&["-output", "json"]);
    let out = agent.cli(&args);
    assert!(
        out.status.success(),
        "spire-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

/// The DER certificates of a PEM bundle.
fn pem_ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .expect("PEM")
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

#[tokio::test]
async fn bundle_commands_print_spire_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;

    let shown = json(&server.cli_ok(&["bundle", "show", "-output", "json"]));
    assert_eq!(shown["trust_domain"], TD);
    let cas: Vec<Vec<u8>> = shown["x509_authorities"]
        .as_array()
        .expect("x509_authorities")
        .iter()
        .map(|a| b64(&a["asn1"]))
        .collect();
    assert_eq!(cas, pem_ders(&server.cli_ok(&["bundle", "show"])));
    let jwt = &shown["jwt_authorities"][0];
    assert!(!jwt["key_id"].as_str().expect("key_id").is_empty());
    assert!(!b64(&jwt["public_key"]).is_empty());
    assert!(jwt["expires_at"].as_i64().expect("expires_at") > 0);
    assert!(shown["sequence_number"].as_i64().expect("sequence") >= 1);

    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("CA");
    let ca_path = dir.path().join("other.pem");
    std::fs::write(&ca_path, other.cert.pem()).expect("write");
    let ca_path = ca_path.to_str().expect("UTF-8");
    let set = json(&server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        ca_path,
        "-output",
        "json",
    ]));
    let result = &set["results"][0];
    assert_eq!(result["status"]["code"], 0);
    assert_eq!(result["bundle"]["trust_domain"], "other.org");
    assert_eq!(
        b64(&result["bundle"]["x509_authorities"][0]["asn1"]),
        other.cert.der().to_vec()
    );

    let listed = json(&server.cli_ok(&["bundle", "list", "-output", "json"]));
    assert_eq!(listed["bundles"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["bundles"][0]["trust_domain"], "other.org");
    let one = json(&server.cli_ok(&[
        "bundle",
        "list",
        "-id",
        "spiffe://other.org",
        "-output",
        "json",
    ]));
    assert_eq!(one, listed["bundles"][0], "-id prints the bundle itself");

    let deleted = json(&server.cli_ok(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://other.org",
        "-output",
        "json",
    ]));
    assert_eq!(deleted["results"][0]["status"]["code"], 0);
    assert_eq!(deleted["results"][0]["trust_domain"], "other.org");
    // A failure is still one JSON document, with its status, and a failed exit.
    let again = server.cli(&[
        "bundle",
        "delete",
        "-id",
        "spiffe://other.org",
        "-output",
        "json",
    ]);
    assert!(!again.status.success());
    let again = json(&String::from_utf8_lossy(&again.stdout));
    assert_eq!(again["results"][0]["status"]["code"], 5, "NotFound");
    let listed = json(&server.cli_ok(&["bundle", "list", "-output", "json"]));
    assert_eq!(listed["bundles"], serde_json::json!([]));
}

#[tokio::test]
async fn agent_commands_print_spire_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("CA");
    let ca_path = dir.path().join("other.pem");
    std::fs::write(&ca_path, other.cert.pem()).expect("write");
    server.cli_ok(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        ca_path.to_str().expect("UTF-8"),
    ]);
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let uid = format!("unix:uid:{}", nix::unistd::geteuid().as_raw());
    server.create_entry(
        APP,
        &server.agent_id(&token),
        &[&uid],
        &["-federatesWith", "spiffe://other.org", "-hint", "app"],
    );
    let svid = agent.fetch_svid().await;

    assert_eq!(
        agent_json(&agent, &["healthcheck"]),
        serde_json::json!({"status": "SERVING"})
    );

    // The federated bundle arrives at the agent's next sync.
    let fetched = wait_for(
        "the federated bundle in `api fetch x509`",
        Duration::from_secs(20),
        || {
            let fetched = agent_json(&agent, &["api", "fetch", "x509"]);
            async move { (!fetched["federated_bundles"].is_null()).then_some(fetched) }
        },
    )
    .await;
    let first = &fetched["svids"][0];
    assert_eq!(first["spiffe_id"], APP);
    assert_eq!(first["hint"], "app");
    assert_eq!(b64(&first["x509_svid"]), svid.leaf().as_ref().to_vec());
    assert!(!b64(&first["x509_svid_key"]).is_empty());
    assert_eq!(
        vec![b64(&first["bundle"])],
        pem_ders(&server.cli_ok(&["bundle", "show"]))
    );
    assert_eq!(
        b64(&fetched["federated_bundles"]["spiffe://other.org"]),
        other.cert.der().to_vec()
    );

    // With -write the files are written and stdout stays one JSON document.
    let written = dir.path().join("written");
    std::fs::create_dir(&written).expect("mkdir");
    let with_files = agent_json(
        &agent,
        &[
            "api",
            "fetch",
            "x509",
            "-write",
            written.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(with_files["svids"][0]["spiffe_id"], APP);
    assert!(written.join("svid.0.pem").exists());
    assert!(written.join("federated_bundle.0.0.pem").exists());

    let jwt = agent_json(&agent, &["api", "fetch", "jwt", "-audience", "db"]);
    let token = jwt[0]["svids"][0]["svid"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(jwt[0]["svids"][0]["spiffe_id"], APP);
    let jwks =
        json(&String::from_utf8(b64(&jwt[1]["bundles"][format!("spiffe://{TD}")])).expect("UTF-8"));
    assert!(!jwks["keys"].as_array().expect("keys").is_empty());

    let valid = agent_json(
        &agent,
        &["api", "validate", "jwt", "-audience", "db", "-svid", &token],
    );
    assert_eq!(valid["spiffe_id"], APP);
    assert_eq!(valid["claims"]["sub"], APP);
    assert_eq!(valid["claims"]["aud"], serde_json::json!(["db"]));
    let invalid = agent.cli(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "web",
        "-svid",
        &token,
        "-output",
        "json",
    ]);
    assert!(!invalid.status.success(), "wrong audience");
    assert!(invalid.stdout.is_empty());

    // `api watch` prints one JSON line per update.
    let mut cmd = Command::new(bin("spire-agent"));
    cmd.args(["api", "watch", "-output", "json", "-socketPath"])
        .arg(&agent.socket);
    let watch = Process::spawn(cmd, dir.path().join("watch.log"));
    let line = wait_for("a line from `api watch`", Duration::from_secs(20), || {
        let log = watch.log();
        async move {
            log.lines()
                .next()
                .filter(|_| log.contains('\n'))
                .map(str::to_owned)
        }
    })
    .await;
    assert_eq!(json(&line)["svids"][0]["spiffe_id"], APP);
}
