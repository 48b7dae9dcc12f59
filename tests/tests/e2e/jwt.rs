//! JWT-SVIDs end to end: the real server and agent, rust-spiffe and py-spiffe as the clients,
//! the server's and agent's CLIs.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use spiffe::{JwtSource, JwtSvid, SpiffeId, TrustDomain, WorkloadApiClient};
use spire_proto::workload as wl;
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tests::stack::{Agent, Server};
use tests::wait_for;
use tonic::Code;

const TD: &str = "example.org";
const APP: &str = "spiffe://example.org/app";

fn uid_selector() -> String {
    format!("unix:uid:{}", nix::unistd::geteuid().as_raw())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A server, an agent, and an entry for this test process's uid with `entry_flags`.
async fn stack(dir: &std::path::Path, spiffe_id: &str, entry_flags: &[&str]) -> (Server, Agent) {
    let server = Server::start(&dir.join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.join("agent"), Some(&token)).await;
    server.create_entry(
        spiffe_id,
        &server.agent_id(&token),
        &[&uid_selector()],
        entry_flags,
    );
    (server, agent)
}

async fn client(agent: &Agent) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connecting to the Workload API")
}

/// Our generated Workload API client with the security header, for what rust-spiffe hides
/// (status codes, the raw JWKS, the claims Struct).
async fn raw_client(
    agent: &Agent,
) -> SpiffeWorkloadApiClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = spire_proto::uds::connect(&agent.socket)
        .await
        .expect("channel");
    SpiffeWorkloadApiClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().expect("ascii"));
        Ok(req)
    })
}

/// Waits for the agent to sync the entry, then fetches a JWT-SVID for `audience`.
async fn fetch_jwt(agent: &Agent, audience: &[&str]) -> JwtSvid {
    wait_for(
        "a JWT-SVID from the agent",
        Duration::from_secs(20),
        || async move {
            client(agent)
                .await
                .fetch_jwt_svid(audience, None)
                .await
                .ok()
        },
    )
    .await
}

async fn validate_status(agent: &Agent, audience: &str, token: &str) -> tonic::Status {
    raw_client(agent)
        .await
        .validate_jwtsvid(wl::ValidateJwtsvidRequest {
            audience: audience.into(),
            svid: token.into(),
        })
        .await
        .expect_err("the agent must refuse this token")
}

fn segment(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("JWS segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A compact JWS with any header and claims, signed by `key`.
fn forge(key: &EcdsaKeyPair, header: Value, claims: Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key
        .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn foreign_key() -> EcdsaKeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("parse")
}

/// The `jwt-svid` keys of `bundle show -format spiffe`, and the whole document.
fn spiffe_bundle(server: &Server) -> (Vec<Value>, Value) {
    let doc: Value = serde_json::from_str(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
        .expect("SPIFFE bundle JSON");
    let jwt = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["use"] == "jwt-svid")
        .cloned()
        .collect();
    (jwt, doc)
}

#[tokio::test]
async fn rust_spiffe_fetches_and_validates_jwt_svids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = stack(dir.path(), APP, &["-hint", "main"]).await;
    let td = TrustDomain::new(TD).expect("td");

    let svid = fetch_jwt(&agent, &["db"]).await;
    assert_eq!(svid.spiffe_id().to_string(), APP);
    assert_eq!(svid.audience(), ["db"]);
    assert_eq!(
        segment(svid.token(), 0),
        json!({"alg": "ES256", "kid": svid.key_id(), "typ": "JWT"}),
        "header is exactly alg, kid, typ"
    );
    assert_eq!(svid.key_id().len(), 32);
    assert!(svid.key_id().bytes().all(|b| b.is_ascii_alphanumeric()));
    let claims = segment(svid.token(), 1);
    assert_eq!(claims["sub"], APP);
    assert_eq!(claims["aud"], json!(["db"]), "aud is always an array");
    let (iat, exp) = (
        claims["iat"].as_i64().expect("integer iat"),
        claims["exp"].as_i64().expect("integer exp"),
    );
    assert_eq!(exp - iat, 300, "default_jwt_svid_ttl is 5 minutes");

    // Cached per entry and audience set: same token again, also with the audiences reordered.
    let two = client(&agent)
        .await
        .fetch_jwt_token(["web", "db"], None)
        .await
        .expect("token");
    assert_eq!(
        client(&agent)
            .await
            .fetch_jwt_token(["db", "web"], None)
            .await
            .expect("token"),
        two
    );
    assert_eq!(
        client(&agent)
            .await
            .fetch_jwt_token(["db"], None)
            .await
            .expect("token"),
        svid.token()
    );

    // Offline validation against the Workload API's JWT bundles.
    let bundles = client(&agent)
        .await
        .fetch_jwt_bundles()
        .await
        .expect("JWT bundles");
    let offline = JwtSvid::parse_and_validate(svid.token(), &bundles, &["db"]).expect("valid");
    assert_eq!(offline.spiffe_id().to_string(), APP);
    assert!(JwtSvid::parse_and_validate(svid.token(), &bundles, &["other"]).is_err());

    // The JWKS itself: only JWT keys, each with kid, no use or sequence; the same key that
    // `bundle show -format spiffe` publishes with use jwt-svid beside the x509 ones.
    let mut stream = raw_client(&agent)
        .await
        .fetch_jwt_bundles(wl::JwtBundlesRequest {})
        .await
        .expect("stream")
        .into_inner();
    let message = stream.message().await.expect("message").expect("first");
    let jwks: Value =
        serde_json::from_slice(&message.bundles[&format!("spiffe://{TD}")]).expect("JWKS");
    assert_eq!(jwks.as_object().expect("object").len(), 1, "{jwks}");
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], svid.key_id());
    assert!(
        key.get("use").is_none() && key.get("x5c").is_none(),
        "{jwks}"
    );
    let (published, doc) = spiffe_bundle(&server);
    assert_eq!(published.len(), 1, "{doc}");
    for field in ["kty", "crv", "x", "y", "kid"] {
        assert_eq!(published[0][field], key[field], "{field}");
    }
    assert!(
        doc["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["use"] == "x509-svid" && k.get("x5c").is_some())
    );
    assert!(doc["spiffe_sequence"].as_i64().is_some(), "{doc}");

    // Server-side validation: rust-spiffe's call, and the claims Struct it does not show.
    let checked = client(&agent)
        .await
        .validate_jwt_token("db", svid.token())
        .await
        .expect("the agent validates it");
    assert_eq!(checked.spiffe_id().to_string(), APP);
    let response = raw_client(&agent)
        .await
        .validate_jwtsvid(wl::ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: svid.token().into(),
        })
        .await
        .expect("valid")
        .into_inner();
    assert_eq!(response.spiffe_id, APP);
    let fields = response.claims.expect("claims").fields;
    use prost_types::value::Kind;
    assert_eq!(
        fields["sub"].kind,
        Some(Kind::StringValue(APP.into())),
        "{fields:?}"
    );
    let Some(Kind::ListValue(aud)) = &fields["aud"].kind else {
        panic!("aud must be a list: {fields:?}");
    };
    assert_eq!(aud.values[0].kind, Some(Kind::StringValue("db".into())));
    assert_eq!(fields["exp"].kind, Some(Kind::NumberValue(exp as f64)));
    assert!(
        client(&agent)
            .await
            .validate_jwt_token("other", svid.token())
            .await
            .is_err()
    );
    let wrong = validate_status(&agent, "other", svid.token()).await;
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert!(wrong.message().contains("audience"), "{}", wrong.message());

    // JwtSource.
    let source = JwtSource::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("JwtSource");
    let from_source = source.fetch_jwt_svid(["db"]).await.expect("JWT-SVID");
    assert_eq!(from_source.spiffe_id().to_string(), APP);
    JwtSvid::parse_and_validate(from_source.token(), &source, &["db"]).expect("valid via source");
    assert!(source.try_bundle_for_trust_domain(&td).is_some());
    source.shutdown().await;
}

#[tokio::test]
async fn the_agent_refuses_bad_requests_and_forged_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent) = stack(dir.path(), APP, &[]).await;
    let svid = fetch_jwt(&agent, &["db"]).await;

    let no_audience = raw_client(&agent)
        .await
        .fetch_jwtsvid(wl::JwtsvidRequest::default())
        .await
        .expect_err("audience required");
    assert_eq!(no_audience.code(), Code::InvalidArgument);
    assert_eq!(no_audience.message(), "audience must be specified");
    let too_many = raw_client(&agent)
        .await
        .fetch_jwtsvid(wl::JwtsvidRequest {
            audience: vec!["a".into(); 33],
            spiffe_id: String::new(),
        })
        .await
        .expect_err("bounded audience");
    assert_eq!(too_many.code(), Code::InvalidArgument);

    let not_mine = SpiffeId::new("spiffe://example.org/not-mine").expect("id");
    let err = client(&agent)
        .await
        .fetch_jwt_svid(["db"], Some(&not_mine))
        .await
        .expect_err("not entitled");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("no identity issued"),
        "{err}"
    );
    let mine = SpiffeId::new(APP).expect("id");
    let filtered = client(&agent)
        .await
        .fetch_jwt_svid(["db"], Some(&mine))
        .await
        .expect("entitled");
    assert_eq!(filtered.spiffe_id(), &mine);

    for (audience, token) in [("", svid.token()), ("db", "")] {
        let status = validate_status(&agent, audience, token).await;
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("must be specified"));
    }

    let claims = json!({"sub": APP, "aud": ["db"], "exp": now() + 300, "iat": now()});
    let foreign = forge(
        &foreign_key(),
        json!({"alg": "ES256", "kid": svid.key_id(), "typ": "JWT"}),
        claims.clone(),
    );
    let status = validate_status(&agent, "db", &foreign).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("signature"),
        "{}",
        status.message()
    );

    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": svid.key_id()}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let status = validate_status(&agent, "db", &format!("{header}.{body}.")).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("algorithm"),
        "{}",
        status.message()
    );

    // A kid-less token, even one signed by a key the agent would otherwise not need to find.
    let no_kid = forge(
        &foreign_key(),
        json!({"alg": "ES256", "typ": "JWT"}),
        claims,
    );
    let status = validate_status(&agent, "db", &no_kid).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("key id"), "{}", status.message());
}

#[tokio::test]
async fn expired_jwt_svids_are_rejected_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent) = stack(dir.path(), APP, &["-jwtSVIDTTL", "2"]).await;
    let svid = fetch_jwt(&agent, &["db"]).await;
    let claims = segment(svid.token(), 1);
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(
        exp - claims["iat"].as_i64().expect("iat"),
        2,
        "the entry's jwtSVIDTTL"
    );
    let bundles = client(&agent)
        .await
        .fetch_jwt_bundles()
        .await
        .expect("bundles");

    wait_for(
        "the token to expire",
        Duration::from_secs(10),
        || async move { (now() > exp).then_some(()) },
    )
    .await;
    assert!(JwtSvid::parse_and_validate(svid.token(), &bundles, &["db"]).is_err());
    let status = validate_status(&agent, "db", svid.token()).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("expired"), "{}", status.message());

    // Past half its life the cached token is not handed out again.
    let fresh = client(&agent)
        .await
        .fetch_jwt_token(["db"], None)
        .await
        .expect("token");
    assert_ne!(fresh, svid.token());
}

#[tokio::test]
async fn jwt_mint_and_the_agent_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = stack(dir.path(), APP, &[]).await;
    fetch_jwt(&agent, &["db"]).await;

    let minted = server.cli_ok(&[
        "jwt",
        "mint",
        "-spiffeID",
        "spiffe://example.org/minted",
        "-audience",
        "db",
        "-audience",
        "web",
        "-ttl",
        "90s",
    ]);
    let token = minted.trim();
    let claims = segment(token, 1);
    assert_eq!(claims["aud"], json!(["db", "web"]));
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        90
    );
    let bundles = client(&agent)
        .await
        .fetch_jwt_bundles()
        .await
        .expect("bundles");
    let valid = JwtSvid::parse_and_validate(token, &bundles, &["web"]).expect("minted validates");
    assert_eq!(valid.spiffe_id().to_string(), "spiffe://example.org/minted");

    let written = dir.path().join("token.jwt");
    server.cli_ok(&[
        "jwt",
        "mint",
        "-spiffeID",
        APP,
        "-audience",
        "db",
        "-write",
        written.to_str().expect("utf-8 path"),
    ]);
    let from_file = std::fs::read_to_string(&written).expect("written token");
    JwtSvid::parse_and_validate(from_file.trim(), &bundles, &["db"]).expect("written validates");
    let refused = server.cli(&["jwt", "mint", "-spiffeID", APP, "-audience", ""]);
    assert!(!refused.status.success(), "an empty audience is refused");

    let agent_cli = |args: &[&str]| agent.cli(args);
    let out = agent_cli(&["api", "validate", "jwt", "-audience", "web", "-svid", token]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("SVID is valid."), "{stdout}");
    assert!(
        stdout.contains("SPIFFE ID : spiffe://example.org/minted"),
        "{stdout}"
    );
    assert!(stdout.contains(r#""aud":["db","web"]"#), "{stdout}");
    let out = agent_cli(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "nope",
        "-svid",
        token,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SVID is not valid"));

    let out = agent_cli(&["api", "fetch", "jwt", "-audience", "db"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("token({APP}):\n\t")), "{stdout}");
    assert!(
        stdout.contains(&format!("bundle(spiffe://{TD}):\n\t{{\"keys\":[")),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_jwt_key_survives_restarts_and_a_new_key_bumps_the_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_dir = dir.path().join("server");
    let mut server = Server::start(&server_dir, TD, &[]).await;
    let (keys, doc) = spiffe_bundle(&server);
    assert_eq!(keys.len(), 1, "{doc}");
    let kid = keys[0]["kid"].as_str().expect("kid").to_owned();
    let sequence = doc["spiffe_sequence"].as_i64().expect("sequence");

    server.process.kill();
    let mut server = Server::start(&server_dir, TD, &[]).await;
    let (keys, doc) = spiffe_bundle(&server);
    assert_eq!(keys.len(), 1, "{doc}");
    assert_eq!(keys[0]["kid"], kid.as_str(), "the key is reused");
    assert_eq!(doc["spiffe_sequence"], sequence, "nothing changed");

    // A new key (as after expiry) is published beside the old, unexpired one.
    server.process.kill();
    std::fs::remove_file(server_dir.join("data/jwt-key.pem")).expect("rm key");
    std::fs::remove_file(server_dir.join("data/jwt-key.json")).expect("rm meta");
    let server = Server::start(&server_dir, TD, &[]).await;
    let (keys, doc) = spiffe_bundle(&server);
    assert_eq!(keys.len(), 2, "{doc}");
    assert_ne!(keys[1]["kid"], kid.as_str());
    assert_eq!(doc["spiffe_sequence"], sequence + 1, "{doc}");
}

#[tokio::test]
async fn py_spiffe_works_without_grpc_options() {
    const INSTALL: &str = "install py-spiffe with `python3 -m pip install -r \
                           examples/python/requirements.txt` (.ci/run does)";
    let check = Command::new("python3")
        .args(["-c", "import spiffe"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed ({e}); {INSTALL}"));
    assert!(
        check.status.success(),
        "py-spiffe is missing ({}); {INSTALL}",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent) = stack(dir.path(), APP, &[]).await;
    fetch_jwt(&agent, &["db"]).await;

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/workload_api_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args([&agent.endpoint(), TD, "db"])
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .await
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py-spiffe failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!("ok x509 {APP}"),
        format!("ok jwt fetched {APP}"),
        format!("ok jwt validated by the agent {APP}"),
        format!("ok jwt validated offline {APP}"),
        "ok wrong audience refused by the agent".into(),
        "ok wrong audience refused offline".into(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
}
