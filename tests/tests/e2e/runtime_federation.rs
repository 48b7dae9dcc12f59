//! Federation relationships created at run time with `spire-server federation ...`, against
//! real servers: two trust domains federated over `https_spiffe` without a restart (workloads
//! of both do mTLS, JWT keys arrive from the endpoint); `https_web` against an HTTPS server
//! whose CA the server trusts through `SSL_CERT_FILE` (`refresh` fetches at once, `delete`
//! stops the fetching, an untrusted certificate is refused); the config file's relationship
//! overriding a stored one; our own endpoint serving `https_web` with a Web PKI certificate
//! that it re-reads when renewed; bad input refused with a clear error and nothing written.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use spiffe::{TrustDomain, WorkloadApiClient, X509Source};
use spire_proto::server as pb;
use tests::mtls::handshake;
use tests::stack::{Agent, Server};
use tests::web_pki::BundleHost;
use tests::{free_port, json as json_of, stderr, wait_for};

const FRONT: &str = "spiffe://example.org/front";
const BACK: &str = "spiffe://other.org/back";

/// A server of `example.org` in `dir` with `flags`, whose only Web PKI root is the CA at
/// `ca_path` (`SSL_CERT_FILE`).
async fn server_trusting(dir: &Path, flags: &[&str], ca_path: &Path) -> Server {
    let ca_file = ca_path.to_str().expect("UTF-8").to_owned();
    Server::start_with_env(dir, "example.org", flags, &[("SSL_CERT_FILE", &ca_file)]).await
}

/// Runs `args` at `server`, which must fail saying `expected`.
fn refused(server: &Server, args: &[&str], expected: &str) {
    let out = server.cli(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        stderr(&out).contains(expected),
        "{args:?}: {}",
        stderr(&out)
    );
}

/// A server for `td` serving its bundle endpoint on loopback (on a port it picks); returns
/// it and the URL.
async fn server_with_endpoint(dir: &Path, td: &str) -> (Server, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        "[server.federation.bundle_endpoint]\naddress = \"127.0.0.1\"\nport = 0\n\
         refresh_hint = \"1s\"\n",
    )
    .expect("config");
    let mut server = Server::start(dir, td, &["-config", config.to_str().expect("UTF-8")]).await;
    let endpoint = server.process.logged_address("bundle endpoint ready").await;
    (server, format!("https://{endpoint}"))
}

/// The bundle of `td` stored at `server`, as `bundle list -id -output json` prints it.
fn stored_bundle(server: &Server, td: &str) -> Option<Value> {
    let id = format!("spiffe://{td}");
    let out = server.cli(&["bundle", "list", "-id", &id, "-output", "json"]);
    out.status
        .success()
        .then(|| json_of(&String::from_utf8_lossy(&out.stdout)))
}

/// The X.509 authorities (base64 DER) of a bundle printed as JSON.
fn cas(bundle: &Value) -> Vec<String> {
    bundle["x509_authorities"]
        .as_array()
        .expect("x509_authorities")
        .iter()
        .map(|a| a["asn1"].as_str().expect("asn1").to_owned())
        .collect()
}

/// The stored CAs of `td` at `server` (none if no bundle).
fn stored_cas(server: &Server, td: &str) -> Vec<String> {
    stored_bundle(server, td)
        .map(|b| cas(&b))
        .unwrap_or_default()
}

/// Waits until `server` stores exactly `want` as the CAs of `td`.
async fn wait_cas(server: &Server, td: &str, want: &[&rcgen::Certificate]) {
    let want: Vec<String> = want.iter().map(|ca| b64(ca)).collect();
    wait_for(&format!("{td}'s bundle"), Duration::from_secs(20), || {
        let done = (stored_cas(server, td) == want).then_some(());
        async move { done }
    })
    .await;
}

/// Waits until `host` has answered `n` requests for `path`.
async fn wait_hits(host: &BundleHost, path: &str, n: usize) {
    wait_for(
        &format!("{n} fetches of {path}"),
        Duration::from_secs(30),
        || {
            let done = (host.hits(path) >= n).then_some(());
            async move { done }
        },
    )
    .await;
}

/// A new self-signed CA (its certificate).
fn new_ca() -> rcgen::Certificate {
    rcgen::generate_simple_self_signed(vec!["ca".into()])
        .expect("CA")
        .cert
}

fn b64(ca: &rcgen::Certificate) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(ca.der())
}

/// A SPIFFE bundle of `td` holding `cas`, with refresh hint `hint` seconds.
fn spiffe_bundle(td: &str, cas: &[&rcgen::Certificate], hint: i64) -> String {
    spire_proto::bundle_format::to_spiffe_json(&pb::Bundle {
        trust_domain: td.to_owned(),
        x509_authorities: cas.iter().map(|c| c.der().to_vec()).collect(),
        refresh_hint: hint,
        sequence_number: 1,
        ..pb::Bundle::default()
    })
    .expect("bundle JSON")
}

fn list(server: &Server) -> Value {
    json_of(&server.cli_ok(&["federation", "list", "-output", "json"]))["federation_relationships"]
        .clone()
}

async fn source(agent: &Agent) -> X509Source {
    identity::workload::x509_source(Some(&agent.endpoint()), Duration::from_secs(20))
        .await
        .expect("X509Source")
}

async fn wait_for_bundle(workload: &X509Source, td: &str) {
    let td = TrustDomain::new(td).expect("td");
    wait_for(
        &format!("{td}'s bundle at the workload"),
        Duration::from_secs(20),
        || {
            let found = workload.try_bundle_for_trust_domain(&td).map(|_| ());
            async move { found }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_relationships_federate_two_servers_over_https_spiffe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, a_url) = server_with_endpoint(&dir.path().join("a"), "example.org").await;
    let (b, b_url) = server_with_endpoint(&dir.path().join("b"), "other.org").await;
    let token_a = a.join_token(&[]);
    let token_b = b.join_token(&[]);
    let agent_a = Agent::start(&a, &dir.path().join("agent-a"), Some(&token_a)).await;
    let agent_b = Agent::start(&b, &dir.path().join("agent-b"), Some(&token_b)).await;
    let uid = format!("unix:uid:{}", nix::unistd::geteuid().as_raw());
    let federates = |td: &str| ["-federatesWith".to_owned(), format!("spiffe://{td}")];
    let [flag, td] = federates("other.org");
    a.create_entry(FRONT, &a.agent_id(&token_a), &[&uid], &[&flag, &td]);
    let [flag, td] = federates("example.org");
    b.create_entry(BACK, &b.agent_id(&token_b), &[&uid], &[&flag, &td]);

    // B follows A, bootstrapped with A's whole bundle (SPIFFE format).
    let a_json = dir.path().join("a.json");
    std::fs::write(&a_json, a.cli_ok(&["bundle", "show", "-format", "spiffe"])).expect("write");
    let created = json_of(&b.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "example.org",
        "-bundleEndpointURL",
        &a_url,
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        "spiffe://example.org/spire/server",
        "-trustDomainBundlePath",
        a_json.to_str().expect("UTF-8"),
        "-trustDomainBundleFormat",
        "spiffe",
        "-output",
        "json",
    ]));
    assert_eq!(created["results"][0]["status"]["code"], 0);
    assert_eq!(
        created["results"][0]["federation_relationship"],
        json!({
            "trust_domain": "example.org",
            "bundle_endpoint_url": a_url,
            "https_spiffe": { "endpoint_spiffe_id": "spiffe://example.org/spire/server" },
        })
    );
    assert_eq!(
        json_of(&b.cli_ok(&[
            "federation",
            "refresh",
            "-id",
            "example.org",
            "-output",
            "json"
        ])),
        json!({"code": 0, "message": "OK"}),
        "B reaches A's endpoint"
    );

    // A follows B, bootstrapped with B's CAs only (PEM): B's JWT keys can only come from B's
    // endpoint.
    let b_pem = dir.path().join("b.pem");
    std::fs::write(&b_pem, b.cli_ok(&["bundle", "show"])).expect("write");
    let created = a.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "other.org",
        "-bundleEndpointURL",
        &b_url,
        "-endpointSpiffeID",
        "spiffe://other.org/spire/server",
        "-trustDomainBundlePath",
        b_pem.to_str().expect("UTF-8"),
    ]);
    assert!(
        created.contains("Bundle endpoint profile   : https_spiffe"),
        "{created}"
    );
    // A JWK carries no expiry, so a fetched key is compared by ID and public key.
    let keys = |bundle: &Value| -> Vec<(Value, Value)> {
        bundle["jwt_authorities"]
            .as_array()
            .expect("jwt_authorities")
            .iter()
            .map(|k| (k["key_id"].clone(), k["public_key"].clone()))
            .collect()
    };
    let b_keys = keys(&json_of(&b.cli_ok(&["bundle", "show", "-output", "json"])));
    assert!(!b_keys.is_empty());
    wait_for(
        "A to fetch B's JWT keys from B's endpoint",
        Duration::from_secs(20),
        || {
            let fetched = stored_bundle(&a, "other.org").map(|b| keys(&b));
            let done = (fetched.as_ref() == Some(&b_keys)).then_some(());
            async move { done }
        },
    )
    .await;
    let listed = list(&a);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["trust_domain"], "other.org");
    let shown = a.cli_ok(&["federation", "show", "-trustDomain", "other.org"]);
    assert!(
        shown.starts_with("Found a federation relationship with trust domain other.org"),
        "{shown}"
    );

    // The workloads of both trust domains get each other's bundle and do mTLS, both ways;
    // B's JWT-SVIDs validate at A's agent with the keys fetched from B's endpoint.
    let front = source(&agent_a).await;
    let back = source(&agent_b).await;
    wait_for_bundle(&front, "other.org").await;
    wait_for_bundle(&back, "example.org").await;
    assert_eq!(handshake(&front, FRONT, &back, BACK).await, Ok(BACK.into()));
    assert_eq!(
        handshake(&back, BACK, &front, FRONT).await,
        Ok(FRONT.into())
    );
    let token = WorkloadApiClient::connect_to(agent_b.endpoint())
        .await
        .expect("B's Workload API")
        .fetch_jwt_token(["front"], None)
        .await
        .expect("JWT-SVID from B");
    // A's agent may still hold the bundle bootstrapped from PEM (X.509 only) until its next
    // sync brings the JWT keys its server fetched.
    let validated = wait_for(
        "A's agent to validate B's token with the keys fetched from B's endpoint",
        Duration::from_secs(20),
        || {
            let (endpoint, token) = (agent_a.endpoint(), token.clone());
            async move {
                WorkloadApiClient::connect_to(endpoint)
                    .await
                    .ok()?
                    .validate_jwt_token("front", &token)
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert_eq!(validated.spiffe_id().to_string(), BACK);

    // An update takes effect at once: with a dead endpoint `refresh` fails and says why.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let update = |url: &str| {
        a.cli_ok(&[
            "federation",
            "update",
            "-trustDomain",
            "other.org",
            "-bundleEndpointURL",
            url,
            "-endpointSpiffeID",
            "spiffe://other.org/spire/server",
        ])
    };
    update(&dead);
    assert_eq!(list(&a)[0]["bundle_endpoint_url"], dead.as_str());
    refused(
        &a,
        &["federation", "refresh", "-id", "other.org"],
        "refreshing the bundle of other.org",
    );
    update(&b_url);
    assert_eq!(
        a.cli_ok(&["federation", "refresh", "-id", "other.org"]),
        "Bundle refreshed\n"
    );

    // Deleted: the relationship is gone, the bundle fetched so far stays (as in SPIRE).
    let deleted = json_of(&a.cli_ok(&[
        "federation",
        "delete",
        "-id",
        "other.org",
        "-output",
        "json",
    ]));
    assert_eq!(
        deleted,
        json!({"results": [{"status": {"code": 0, "message": "OK"}, "trust_domain": "other.org"}]})
    );
    assert_eq!(list(&a), json!([]));
    assert!(stored_bundle(&a, "other.org").is_some());
    refused(
        &a,
        &["federation", "refresh", "-id", "other.org"],
        "no federation relationship with other.org",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_web_relationships_refresh_at_once_and_stop_when_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = BundleHost::start(&dir.path().join("host"), "web").await;
    let stranger = BundleHost::start(&dir.path().join("stranger"), "stranger").await;
    // The server trusts the host's CA, and only it, as its Web PKI roots.
    let server = server_trusting(&dir.path().join("server"), &[], &host.ca_path).await;
    let (ca1, ca2) = (new_ca(), new_ca());
    host.set("/web", spiffe_bundle("web.org", &[&ca1], 300));
    let create = |td: &str, url: &str| {
        json_of(&server.cli_ok(&[
            "federation",
            "create",
            "-trustDomain",
            td,
            "-bundleEndpointURL",
            url,
            "-bundleEndpointProfile",
            "https_web",
            "-output",
            "json",
        ]))["results"][0]["federation_relationship"]
            .clone()
    };
    assert_eq!(
        create("web.org", &host.url("/web")),
        json!({"trust_domain": "web.org", "bundle_endpoint_url": host.url("/web"), "https_web": {}})
    );
    wait_cas(&server, "web.org", &[&ca1]).await;

    // The bundle changes; its 300 s refresh hint is far off, `refresh` fetches it now.
    host.set("/web", spiffe_bundle("web.org", &[&ca1, &ca2], 300));
    let before = host.hits("/web");
    assert_eq!(
        server.cli_ok(&["federation", "refresh", "-id", "web.org"]),
        "Bundle refreshed\n"
    );
    assert_eq!(stored_cas(&server, "web.org"), [b64(&ca1), b64(&ca2)]);
    assert_eq!(host.hits("/web"), before + 1);

    // Two relationships fetched every second; once one is deleted its endpoint hears no
    // more from the server, while the other's goes on being fetched.
    host.set("/live", spiffe_bundle("live.org", &[&ca1], 1));
    host.set("/gone", spiffe_bundle("gone.org", &[&ca2], 1));
    create("live.org", &host.url("/live"));
    create("gone.org", &host.url("/gone"));
    wait_hits(&host, "/gone", 2).await;
    wait_hits(&host, "/live", 2).await;
    server.cli_ok(&["federation", "delete", "-id", "gone.org"]);
    // A request already on its way when the delete returned has arrived by now.
    wait_hits(&host, "/live", host.hits("/live") + 2).await;
    let gone = host.hits("/gone");
    wait_hits(&host, "/live", host.hits("/live") + 4).await;
    assert_eq!(host.hits("/gone"), gone, "fetched after its deletion");
    assert_eq!(
        stored_cas(&server, "gone.org"),
        [b64(&ca2)],
        "the bundle stays"
    );

    // An endpoint whose certificate is not from a trusted root is refused; nothing stored.
    stranger.set("/web", spiffe_bundle("stranger.org", &[&ca1], 1));
    create("stranger.org", &stranger.url("/web"));
    refused(
        &server,
        &["federation", "refresh", "-id", "stranger.org"],
        "UnknownIssuer",
    );
    assert_eq!(stranger.hits("/web"), 0);
    assert!(stored_bundle(&server, "stranger.org").is_none());
}

/// Our own bundle endpoint with the `https_web` profile: it presents a Web PKI certificate
/// from files instead of its SVID, and picks up a renewed certificate without a restart. A
/// second server that trusts only the renewed certificate's CA (`SSL_CERT_FILE`) is refused
/// until the renewal, then stores the endpoint's bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_web_bundle_endpoint_serves_its_web_certificate_and_follows_renewals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = tests::web_pki::serving_cert(&dir.path().join("certs"), "trusted");
    let stranger = tests::web_pki::serving_cert(&dir.path().join("certs"), "stranger");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).expect("dir");
    let (cert, key) = (served.join("endpoint.pem"), served.join("endpoint.key"));
    let install = |from: &tests::web_pki::ServingCert| {
        std::fs::copy(&from.cert_path, &cert).expect("cert");
        std::fs::copy(&from.key_path, &key).expect("key");
    };
    install(&stranger);
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).expect("dir");
    let config = a_dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server.federation.bundle_endpoint]\naddress = \"127.0.0.1\"\nport = 0\n\
             refresh_hint = \"1s\"\nprofile = \"https_web\"\n\
             [server.federation.bundle_endpoint.serving_cert_file]\n\
             cert_file_path = {cert:?}\nkey_file_path = {key:?}\nfile_sync_interval = \"1s\"\n"
        ),
    )
    .expect("config");
    let mut a = Server::start(
        &a_dir,
        "web.org",
        &["-config", config.to_str().expect("UTF-8")],
    )
    .await;
    let port = a
        .process
        .logged_address("bundle endpoint ready")
        .await
        .port();
    let b = server_trusting(&dir.path().join("b"), &[], &trusted.ca_path).await;
    b.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "web.org",
        "-bundleEndpointURL",
        &format!("https://localhost:{port}"),
        "-bundleEndpointProfile",
        "https_web",
    ]);
    // The endpoint presents the certificate from its files, not its SVID: one B's roots do not
    // hold is refused.
    refused(
        &b,
        &["federation", "refresh", "-id", "web.org"],
        "UnknownIssuer",
    );
    assert!(stored_bundle(&b, "web.org").is_none());

    // Renewed on disk with a certificate B trusts: served without a restart.
    install(&trusted);
    wait_for(
        "the renewed certificate to be served",
        Duration::from_secs(30),
        || {
            let ok = b
                .cli(&["federation", "refresh", "-id", "web.org"])
                .status
                .success();
            async move { ok.then_some(()) }
        },
    )
    .await;
    let own = cas(&json_of(&a.cli_ok(&["bundle", "show", "-output", "json"])));
    assert!(!own.is_empty());
    assert_eq!(stored_cas(&b, "web.org"), own);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_relationship_overrides_a_stored_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = BundleHost::start(&dir.path().join("host"), "web").await;
    let (stored_ca, config_ca) = (new_ca(), new_ca());
    host.set("/stored", spiffe_bundle("web.org", &[&stored_ca], 1));
    host.set("/config", spiffe_bundle("web.org", &[&config_ca], 1));
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "").expect("config");
    let mut server = server_trusting(
        &dir.path().join("server"),
        &["-config", config.to_str().expect("UTF-8")],
        &host.ca_path,
    )
    .await;
    server.cli_ok(&[
        "federation",
        "create",
        "-trustDomain",
        "web.org",
        "-bundleEndpointURL",
        &host.url("/stored"),
        "-bundleEndpointProfile",
        "https_web",
    ]);
    wait_cas(&server, "web.org", &[&stored_ca]).await;

    std::fs::write(
        &config,
        format!(
            "[server.federation.federates_with.\"web.org\"]\n\
             bundle_endpoint_url = \"{}\"\nbundle_endpoint_profile = \"https_web\"\n",
            host.url("/config")
        ),
    )
    .expect("config");
    server.restart().await;
    let listed = list(&server);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["bundle_endpoint_url"], host.url("/config"));
    let shown = json_of(&server.cli_ok(&[
        "federation",
        "show",
        "-trustDomain",
        "web.org",
        "-output",
        "json",
    ]));
    assert_eq!(shown, listed[0]);
    wait_cas(&server, "web.org", &[&config_ca]).await;
    // The stored endpoint is not fetched while the file's relationship is in force.
    wait_hits(&host, "/config", host.hits("/config") + 2).await;
    let stored_hits = host.hits("/stored");
    wait_hits(&host, "/config", host.hits("/config") + 3).await;
    assert_eq!(host.hits("/stored"), stored_hits);
    refused(
        &server,
        &[
            "federation",
            "update",
            "-trustDomain",
            "web.org",
            "-bundleEndpointURL",
            &host.url("/stored"),
            "-bundleEndpointProfile",
            "https_web",
        ],
        "in the config file",
    );
    refused(
        &server,
        &["federation", "delete", "-id", "web.org"],
        "in the config file",
    );

    // Out of the file again, the stored relationship is back: it was kept all along.
    std::fs::write(&config, "").expect("config");
    server.restart().await;
    assert_eq!(list(&server)[0]["bundle_endpoint_url"], host.url("/stored"));
    wait_cas(&server, "web.org", &[&stored_ca]).await;
}

#[tokio::test]
async fn bad_relationships_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), "example.org", &[]).await;
    let (ca, ca2) = (new_ca(), new_ca());
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).expect("write");
    let ca_pem = ca_pem.to_str().expect("UTF-8");
    let nothing_written = || {
        assert_eq!(list(&server), json!([]));
        assert_eq!(
            json_of(&server.cli_ok(&["bundle", "list", "-output", "json"]))["bundles"],
            json!([])
        );
    };

    // Each with a valid bundle to bootstrap with, which must not be stored either.
    let create = |td: &str, url: &str, profile: &str, id: &str| -> Vec<String> {
        [
            "federation",
            "create",
            "-trustDomain",
            td,
            "-bundleEndpointURL",
            url,
            "-bundleEndpointProfile",
            profile,
            "-endpointSpiffeID",
            id,
            "-trustDomainBundlePath",
            ca_pem,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let other_server = "spiffe://other.org/spire/server";
    for (args, expected) in [
        (
            create("other.org", "https://other.org", "https_pigeon", ""),
            "not supported",
        ),
        (
            create("other.org", "https://oth er.org", "https_web", ""),
            "bundle endpoint URL",
        ),
        (
            create("other.org", "http://other.org", "https_web", ""),
            "must be an https:// URL",
        ),
        (
            create("other.org", "https://me@other.org", "https_web", ""),
            "user information",
        ),
        (
            create(
                "example.org",
                "https://x",
                "https_spiffe",
                "spiffe://example.org/spire/server",
            ),
            "own trust domain",
        ),
        (
            create("other.org", "https://x", "https_spiffe", ""),
            "needs the endpoint's SPIFFE ID",
        ),
        (
            create(
                "other.org",
                "https://x",
                "https_spiffe",
                "spiffe://third.org/spire/server",
            ),
            "not in other.org",
        ),
        (
            create("not a td!", "https://x", "https_spiffe", other_server),
            "invalid trust domain",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&server, &args, expected);
        nothing_written();
    }
    // Refused by the CLI before anything is sent.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "no certificate here").expect("write");
    let mut args = create("other.org", "https://x", "https_spiffe", other_server);
    args[11] = garbage.to_str().expect("UTF-8").to_owned();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&server, &args, "invalid trust domain bundle");
    refused(
        &server,
        &["federation", "create", "-trustDomain", "other.org"],
        "-bundleEndpointURL are required",
    );
    let data = dir.path().join("relationships.json");
    let data_path = data.to_str().expect("UTF-8").to_owned();
    refused(
        &server,
        &[
            "federation",
            "create",
            "-data",
            &data_path,
            "-trustDomain",
            "x.org",
        ],
        "cannot use other flags",
    );
    std::fs::write(&data, "{\"federationRelationships\": [").expect("write");
    refused(
        &server,
        &["federation", "create", "-data", &data_path],
        "not SPIRE's federation relationships JSON",
    );
    nothing_written();

    // A batch: each relationship is created or refused on its own, and reported.
    let batch = |bundle: &rcgen::Certificate| {
        json!({"federationRelationships": [
            {"trustDomain": "web.org", "bundleEndpointURL": "https://web.org/bundle",
             "bundleEndpointProfile": "https_web"},
            {"trustDomain": "example.org", "bundleEndpointURL": "https://x",
             "bundleEndpointProfile": "https_web"},
            {"trustDomain": "other.org", "bundleEndpointURL": "https://other.org:8443",
             "bundleEndpointProfile": "https_spiffe", "endpointSPIFFEID": other_server,
             "trustDomainBundle": bundle.pem(), "trustDomainBundleFormat": "pem"}
        ]})
        .to_string()
    };
    std::fs::write(&data, batch(&ca)).expect("write");
    let out = server.cli(&[
        "federation",
        "create",
        "-data",
        &data_path,
        "-output",
        "json",
    ]);
    assert!(!out.status.success(), "one relationship is refused");
    let results = json_of(&String::from_utf8_lossy(&out.stdout))["results"].clone();
    let codes: Vec<_> = (0..3)
        .map(|i| results[i]["status"]["code"].clone())
        .collect();
    assert_eq!(codes, [json!(0), json!(3), json!(0)], "{results}");
    assert_eq!(
        results[1]["federation_relationship"]["trust_domain"],
        "example.org"
    );
    let listed: Vec<_> = list(&server)
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["trust_domain"].clone())
        .collect();
    assert_eq!(listed, [json!("other.org"), json!("web.org")]);
    assert_eq!(stored_cas(&server, "other.org"), [b64(&ca)]);

    // Again, with another bundle: every one refused as a duplicate, the bundle untouched.
    std::fs::write(&data, batch(&ca2)).expect("write");
    let out = server.cli(&["federation", "create", "-data", &data_path]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out)
            .matches("Failed to create the following federation relationship (code: AlreadyExists")
            .count(),
        2,
        "{}",
        stderr(&out)
    );
    assert_eq!(stored_cas(&server, "other.org"), [b64(&ca)]);

    // What does not exist cannot be updated, deleted or refreshed.
    let mut args = create("third.org", "https://x", "https_spiffe", "");
    args[9] = "spiffe://third.org/spire/server".into();
    args[1] = "update".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&server, &args, "no federation relationship with third.org");
    assert!(stored_bundle(&server, "third.org").is_none());
    for command in ["delete", "refresh"] {
        refused(
            &server,
            &["federation", command, "-id", "third.org"],
            "no federation relationship with third.org",
        );
    }
}
