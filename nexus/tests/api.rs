//! The v1 API's handling of bad input and authorisation, without TLS: each request carries the
//! peer identity the TLS layer would have attached. A real SQLite store and a real root key
//! sit behind the routes.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use identity::listener::PeerInfo;
use nexus::api::ApiLimits;
use nexus::audit::AuditLog;
use nexus::clock::Clock;
use nexus::keys::Lifecycle;
use nexus::policy::access::Access;
use nexus::service::Nexus;
use nexus::store::Store;
use nexus_crypto::{KeyCheck, RootKey, combine, split};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "spiffe://td/spike/pilot/role/superuser";
const APP: &str = "spiffe://td/app/billing";

struct Api {
    router: axum::Router,
    nexus: Arc<Nexus>,
    _dir: tempfile::TempDir,
}

async fn api(ready: bool) -> Api {
    api_with(ready, ApiLimits::default()).await
}

/// An API with `limits`, its database and audit log (`audit.log`) in a temporary directory.
async fn api_with(ready: bool, limits: ApiLimits) -> Api {
    api_dated(ready, limits, Clock::system()).await
}

/// [`api_with`], dated by `clock`.
async fn api_dated(ready: bool, limits: ApiLimits, clock: Clock) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
    let store = Store::connect(&url).await.expect("store");
    let nexus = Arc::new(
        Nexus::new(
            store,
            Lifecycle::new(2, 3),
            Access::new("td").expect("access"),
            3,
            AuditLog::file(&dir.path().join("audit.log")).expect("audit log"),
        )
        .with_clock(clock),
    );
    if ready {
        nexus::keys::install(&nexus, RootKey::generate().expect("root key"))
            .await
            .expect("install");
    }
    Api {
        router: nexus::api::router(nexus.clone(), &limits),
        nexus,
        _dir: dir,
    }
}

impl Api {
    /// The whole response to one request from `caller`.
    async fn response(
        &self,
        caller: &str,
        method: &str,
        uri: &str,
        body: Vec<u8>,
    ) -> axum::response::Response {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        request.extensions_mut().insert(PeerInfo {
            spiffe_id: Some(caller.parse().expect("SPIFFE ID")),
            serial_number: None,
            remote_addr: "127.0.0.1:1".parse().expect("addr"),
        });
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("response")
    }

    async fn raw(
        &self,
        caller: &str,
        method: &str,
        uri: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self.response(caller, method, uri, body).await;
        let status = response.status();
        assert!(
            response.headers().contains_key("x-request-id"),
            "every answer names its audit line"
        );
        assert_eq!(
            response
                .headers()
                .get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap_or("")),
            Some("no-store, no-cache, must-revalidate, private"),
            "every answer forbids caching"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Writes `{"k": "v"}` at each of `paths` as the superuser, each answered 200.
    async fn put_each(&self, paths: impl IntoIterator<Item = &str>) {
        for path in paths {
            let (status, answer) = self
                .post(
                    ADMIN,
                    "/v1/store/secrets",
                    json!({"path": path, "values": {"k": "v"}}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        }
    }

    async fn post(&self, caller: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        self.raw(caller, "POST", uri, body.to_string().into_bytes())
            .await
    }
}

#[tokio::test]
async fn bad_requests_get_spike_codes_and_messages_that_never_echo_values() {
    let api = api(true).await;
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("POST", "/v1/store/secrets?action=purge", b"{}".to_vec(), StatusCode::BAD_REQUEST, "api_bad_request"),
        ("GET", "/v1/store/secrets", Vec::new(), StatusCode::BAD_REQUEST, "api_bad_request"),
        ("POST", "/v1/nope", b"{}".to_vec(), StatusCode::BAD_REQUEST, "api_bad_request"),
        ("POST", "/v1/store/secrets?action=get", Vec::new(), StatusCode::BAD_REQUEST, "api_bad_request"),
        ("POST", "/v1/store/secrets", b"{\"path\":".to_vec(), StatusCode::BAD_REQUEST, "api_bad_request"),
        (
            "POST",
            "/v1/store/secrets",
            br#"{"path":"a","values":{"k":["hunter2-in-a-list"]}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "api_bad_request",
        ),
        (
            "POST",
            "/v1/store/secrets",
            json!({"path": "a b", "values": {"k": "v"}}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            "api_bad_request",
        ),
        (
            "POST",
            "/v1/store/secrets",
            json!({"path": "a", "values": {"k": "x".repeat(2 << 20)}}).to_string().into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "api_payload_too_large",
        ),
        (
            "POST",
            "/v1/acl/policy",
            json!({"name": "p", "spiffeidPattern": "(", "pathPattern": ".*", "permissions": ["read"]}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            "api_bad_request",
        ),
        (
            "POST",
            "/v1/acl/policy",
            json!({"name": "p", "spiffeidPattern": ".*", "pathPattern": ".*", "permissions": ["fly"]}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            "api_bad_request",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (got, answer) = api.raw(ADMIN, method, uri, body).await;
        assert_eq!(got, status, "{method} {uri}: {answer}");
        assert_eq!(answer["err"], code, "{method} {uri}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{method} {uri}: a message says what is wrong"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }
    // Nothing was written by any of them.
    assert!(api.nexus.store.list_paths().await.expect("list").is_empty());
}

#[tokio::test]
async fn sealed_nexus_answers_state_not_ready_but_reports_status() {
    let api = api(false).await;
    for (uri, body) in [
        ("/v1/store/secrets?action=get", json!({"path": "a"})),
        ("/v1/store/secrets?action=list", json!({})),
        ("/v1/acl/policy?action=list", json!({})),
    ] {
        for caller in [ADMIN, APP] {
            let (status, answer) = api.post(caller, uri, body.clone()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert_eq!(answer["err"], "state_not_ready");
        }
    }
    let (status, answer) = api.post(APP, "/v1/status", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["state"], "uninitialized");
    assert_eq!(answer["keepers"]["threshold"], 2);
}

#[tokio::test]
async fn an_operator_seal_refuses_data_routes_and_restore_until_the_superuser_lifts_it() {
    const RESTORE: &str = "spiffe://td/spike/pilot/role/restore";
    let api = api(false).await;
    let root = RootKey::generate().expect("root key");
    let record = nexus::store::KeyRecord {
        key_check: KeyCheck::compute(&root).expect("check").to_bytes(),
        threshold: 2,
        shares: 3,
        created_at: time::OffsetDateTime::now_utc(),
    };
    assert!(api.nexus.store.initialize(&record).await.expect("init"));
    let copy = || RootKey::from_bytes(*root.expose_secret());
    nexus::keys::install(&api.nexus, copy())
        .await
        .expect("install");
    let put = json!({"path": "db/a", "values": {"k": "v"}});
    let (status, _) = api.post(ADMIN, "/v1/store/secrets", put.clone()).await;
    assert_eq!(status, StatusCode::OK);

    // Only the superuser seals; a body that is not `{}` is refused before anything.
    let (status, _) = api.post(APP, "/v1/operator/seal", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = api
        .raw(ADMIN, "POST", "/v1/operator/seal", b"{".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = api
        .raw(
            ADMIN,
            "POST",
            "/v1/operator/seal?action=get",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        api.nexus.keys.root().is_some(),
        "refused seals change nothing"
    );

    let (status, answer) = api.post(ADMIN, "/v1/operator/seal", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["state"], "sealed");
    assert_eq!(answer["operatorSeal"]["by"], ADMIN);
    let at = answer["operatorSeal"]["at"].clone();
    assert!(api.nexus.keys.root().is_none());
    let stored = api.nexus.store.operator_seal().await.expect("read");
    assert_eq!(stored.map(|s| s.by), Some(ADMIN.to_owned()));

    for (uri, body) in [
        ("/v1/store/secrets?action=get", json!({"path": "db/a"})),
        ("/v1/store/secrets", put.clone()),
        ("/v1/acl/policy?action=list", json!({})),
        ("/v1/cipher/encrypt", json!({"plaintext": "aGk="})),
        ("/v1/operator/rotate", json!({})),
    ] {
        let (status, answer) = api.post(ADMIN, uri, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {answer}");
        assert_eq!(answer["err"], "state_not_ready");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "Nexus is sealed: an operator ({ADMIN}) sealed it at {}",
                at.as_str().unwrap_or("?")
            )),
            "{uri}: {message}"
        );
    }
    let (_, status) = api.post(APP, "/v1/status", json!({})).await;
    assert_eq!(status["operatorSeal"]["at"], at);
    let (status, answer) = api.post(ADMIN, "/v1/operator/seal", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already sealed")
    );
    let shards = split(&root, 2, 3).expect("split");
    let shard = json!({"id": 1, "shard": shards[0].expose_secret().to_vec()});
    let (status, answer) = api.post(RESTORE, "/v1/operator/restore", shard).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sealed by an operator"),
        "{answer}"
    );
    assert!(
        api.nexus.keys.root().is_none(),
        "restore does not lift a seal"
    );

    // The unseal lifts the stored seal and waits for the key to come back; here the test
    // plays the keeper loop.
    let (status, _) = api.post(APP, "/v1/operator/unseal", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let nexus = api.nexus.clone();
    let key = copy();
    let keeper_loop = tokio::spawn(async move {
        while nexus.keys.phase() != nexus::keys::Phase::Sealed {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        nexus::keys::install(&nexus, key).await.map(|_| ())
    });
    let (status, answer) = api.post(ADMIN, "/v1/operator/unseal", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(keeper_loop.await.expect("task").is_ok());
    assert_eq!(answer["state"], "ready", "{answer}");
    assert!(answer.get("operatorSeal").is_none());
    assert_eq!(api.nexus.store.operator_seal().await.expect("read"), None);
    let (status, answer) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "db/a"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["k"], "v");
    let (status, answer) = api.post(ADMIN, "/v1/operator/unseal", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not sealed by an operator"),
        "{answer}"
    );
}

#[tokio::test]
async fn workloads_get_only_what_policies_grant_and_roles_nothing() {
    let api = api(true).await;
    api.put_each(["billing/db", "other/db"]).await;
    let (status, answer) = api
        .post(
            APP,
            "/v1/store/secrets?action=get",
            json!({"path": "billing/db"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["err"], "access_unauthorized");
    assert!(answer["message"].as_str().unwrap_or_default().contains(APP));

    let (status, _) = api
        .post(
            ADMIN,
            "/v1/acl/policy",
            json!({"name": "billing", "spiffeidPattern": "spiffe://td/app/billing", "pathPattern": "billing/.*", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = api
        .post(
            APP,
            "/v1/store/secrets?action=get",
            json!({"path": "billing/db"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["k"], "v");
    let (_, answer) = api
        .post(APP, "/v1/store/secrets?action=list", json!({}))
        .await;
    assert_eq!(answer["keys"], json!(["billing/db"]));
    let (status, _) = api
        .post(
            APP,
            "/v1/store/secrets",
            json!({"path": "billing/db", "values": {"k": "w"}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "read does not grant write"
    );
    let (status, _) = api.post(APP, "/v1/acl/policy?action=list", json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "policies are admin business"
    );

    // Role IDs are never granted through policies, even by a catch-all.
    api.post(
        ADMIN,
        "/v1/acl/policy",
        json!({"name": "everyone", "spiffeidPattern": ".*", "pathPattern": ".*", "permissions": ["super"]}),
    )
    .await;
    let (status, _) = api
        .post(
            "spiffe://td/spike/keeper/k1",
            "/v1/store/secrets?action=get",
            json!({"path": "other/db"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A revoked grant stops working at once.
    api.post(
        ADMIN,
        "/v1/acl/policy?action=delete",
        json!({"id": "everyone"}),
    )
    .await;
    api.post(
        ADMIN,
        "/v1/acl/policy?action=delete",
        json!({"id": "billing"}),
    )
    .await;
    let (status, _) = api
        .post(
            APP,
            "/v1/store/secrets?action=get",
            json!({"path": "billing/db"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// SPIKE's list answer, byte for byte: `{"keys":[...]}` in byte-wise order, typed JSON, no
/// `nextCursor`, for the superuser (every path) and for a workload (its readable ones).
#[tokio::test]
async fn the_full_list_is_spikes_exact_bytes_for_every_caller() {
    let api = api(true).await;
    let list = || json!({}).to_string().into_bytes();
    let uri = "/v1/store/secrets?action=list";
    let body = |response: axum::response::Response| async move {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    };
    let empty = api.response(ADMIN, "POST", uri, list()).await;
    assert_eq!(body(empty).await, r#"{"keys":[]}"#);

    // Written out of order; "billing/a-b" sorts before "billing/a/b" ('-' < '/').
    api.put_each([
        "z",
        "billing/a/b",
        "billing/db",
        "Billing/db",
        "billing/a-b",
        "a",
    ])
    .await;
    let every = api.response(ADMIN, "POST", uri, list()).await;
    assert_eq!(
        body(every).await,
        r#"{"keys":["Billing/db","a","billing/a-b","billing/a/b","billing/db","z"]}"#
    );

    let none = api.response(APP, "POST", uri, list()).await;
    assert_eq!(body(none).await, r#"{"keys":[]}"#, "no policy, no path");
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/acl/policy",
            json!({"name": "billing", "spiffeidPattern": "spiffe://td/app/billing", "pathPattern": "billing/a.*", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let readable = api.response(APP, "POST", uri, list()).await;
    assert_eq!(
        body(readable).await,
        r#"{"keys":["billing/a-b","billing/a/b"]}"#
    );
}

#[tokio::test]
async fn check_and_set_conflicts_and_versions() {
    let api = api(true).await;
    let put = |cas: Option<u64>, v: &str| {
        let mut body = json!({"path": "db", "values": {"password": v}});
        if let Some(cas) = cas {
            body["cas"] = json!(cas);
        }
        body
    };
    let (status, answer) = api
        .post(ADMIN, "/v1/store/secrets", put(Some(0), "one"))
        .await;
    assert_eq!(
        (status, answer["version"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (status, answer) = api
        .post(ADMIN, "/v1/store/secrets", put(Some(0), "lost"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["err"], "api_conflict");
    for v in ["two", "three", "four"] {
        api.post(ADMIN, "/v1/store/secrets", put(None, v)).await;
    }
    // max_versions is 3 here: version 1 is pruned from storage.
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "db", "version": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, meta) = api
        .post(
            ADMIN,
            "/v1/store/secrets/metadata?action=get",
            json!({"path": "db"}),
        )
        .await;
    assert_eq!(meta["metadata"]["currentVersion"], 4);
    assert_eq!(meta["metadata"]["oldestVersion"], 2);
    assert_eq!(meta["versions"].as_object().map(|v| v.len()), Some(3));
    assert_eq!(meta["versions"]["4"]["createdBy"], ADMIN);
}

#[tokio::test]
async fn versions_and_audit_lines_are_dated_by_the_injected_clock() {
    let written = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time")
        + time::Duration::milliseconds(123);
    let clock = Clock::manual(written);
    let api = api_dated(true, ApiLimits::default(), clock.clone()).await;
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "db", "values": {"k": "v"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    clock.set(written + time::Duration::minutes(1));
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=delete",
            json!({"path": "db", "versions": [1]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, meta) = api
        .post(
            ADMIN,
            "/v1/store/secrets/metadata?action=get",
            json!({"path": "db"}),
        )
        .await;
    assert_eq!(meta["metadata"]["createdTime"], "2030-03-17T17:46:40.123Z");
    assert_eq!(meta["metadata"]["updatedTime"], "2030-03-17T17:47:40.123Z");
    assert_eq!(
        meta["versions"]["1"]["createdTime"],
        "2030-03-17T17:46:40.123Z"
    );
    assert_eq!(
        meta["versions"]["1"]["deletedTime"],
        "2030-03-17T17:47:40.123Z"
    );
    let times: Vec<Value> = api
        .audit_lines()
        .iter()
        .map(|l| l["time"].clone())
        .collect();
    assert_eq!(
        times,
        [
            "2030-03-17T17:46:40.123000Z",
            "2030-03-17T17:47:40.123000Z",
            "2030-03-17T17:47:40.123000Z"
        ]
    );
}

#[tokio::test]
async fn break_glass_recover_and_restore() {
    const RECOVER: &str = "spiffe://td/spike/pilot/role/recover";
    const RESTORE: &str = "spiffe://td/spike/pilot/role/restore";
    // A Nexus whose datastore knows a root key that is not in memory: sealed.
    let api = api(false).await;
    let root = RootKey::generate().expect("root key");
    let record = nexus::store::KeyRecord {
        key_check: nexus_crypto::KeyCheck::compute(&root)
            .expect("check")
            .to_bytes(),
        threshold: 2,
        shares: 3,
        created_at: time::OffsetDateTime::now_utc(),
    };
    assert!(
        api.nexus
            .store
            .initialize(&record)
            .await
            .expect("initialize")
    );
    let shards = nexus_crypto::split(&root, 2, 3).expect("split");
    let shard =
        |i: usize| json!({"id": shards[i].id(), "shard": shards[i].expose_secret().to_vec()});

    // Only the restore role may restore, only the recover role may recover.
    for caller in [ADMIN, RECOVER, APP] {
        let (status, _) = api.post(caller, "/v1/operator/restore", shard(0)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{caller}");
    }
    let (status, answer) = api.post(RESTORE, "/v1/operator/restore", shard(0)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"collected": 1, "remaining": 1, "restored": false})
    );
    let (status, answer) = api.post(RESTORE, "/v1/operator/restore", shard(0)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a duplicate is refused: {answer}"
    );
    for bad in [
        json!({"id": 9, "shard": vec![1u8; 32]}),
        json!({"id": 2, "shard": vec![1u8; 31]}),
        json!({"id": 2, "shard": vec![0u8; 32]}),
    ] {
        let (status, _) = api.post(RESTORE, "/v1/operator/restore", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // A shard of another key completes the threshold but does not verify: all discarded.
    let stranger = nexus_crypto::split(&RootKey::generate().expect("key"), 2, 3).expect("split");
    let (status, answer) = api
        .post(
            RESTORE,
            "/v1/operator/restore",
            json!({"id": 2, "shard": stranger[1].expose_secret().to_vec()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(api.nexus.keys.root().is_none());

    // Two good shards restore the key.
    api.post(RESTORE, "/v1/operator/restore", shard(2)).await;
    let (status, answer) = api.post(RESTORE, "/v1/operator/restore", shard(1)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["restored"], true);
    assert_eq!(*api.nexus.keys.root().expect("restored"), root);
    let (status, _) = api.post(RESTORE, "/v1/operator/restore", shard(0)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an unsealed Nexus refuses restore"
    );

    // Recovery shards are the keepers' shards.
    let (status, _) = api.post(ADMIN, "/v1/operator/recover", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = api.post(RECOVER, "/v1/operator/recover", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for s in &shards {
        assert_eq!(
            answer["shards"][s.id().to_string()],
            json!(s.expose_secret().to_vec())
        );
    }
}

impl Api {
    /// The audit lines written so far, parsed.
    fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self._dir.path().join("audit.log"))
            .expect("audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

#[tokio::test]
async fn every_request_leaves_one_audit_line_with_the_caller_and_no_value() {
    let api = api(true).await;
    let secret = "correct-horse-battery-staple";
    let requests = [
        (
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "db/pw", "values": {"pw": secret}}),
        ),
        (
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "db/pw"}),
        ),
        (
            APP,
            "/v1/store/secrets?action=get",
            json!({"path": "db/pw"}),
        ),
        (APP, "/v1/nowhere", json!({})),
        (APP, "/v1/status", json!({})),
    ];
    let mut statuses = Vec::new();
    for (caller, uri, body) in &requests {
        statuses.push(api.post(caller, uri, body.clone()).await.0.as_u16());
    }
    assert_eq!(statuses, [200, 200, 401, 400, 200]);
    let text = std::fs::read_to_string(api._dir.path().join("audit.log")).expect("audit log");
    assert!(!text.contains(secret), "no secret value in the audit log");
    let lines = api.audit_lines();
    assert_eq!(lines.len(), requests.len(), "one line per request");
    let fields = |l: &Value, k: &str| l[k].as_str().unwrap_or_default().to_owned();
    let summary: Vec<[String; 5]> = lines
        .iter()
        .map(|l| {
            [
                fields(l, "caller"),
                fields(l, "route"),
                fields(l, "action"),
                fields(l, "path"),
                fields(l, "decision"),
            ]
        })
        .collect();
    let row = |c: &str, r: &str, a: &str, p: &str, d: &str| [c, r, a, p, d].map(str::to_owned);
    assert_eq!(
        summary,
        [
            row(ADMIN, "/v1/store/secrets", "put", "db/pw", "allow"),
            row(ADMIN, "/v1/store/secrets", "get", "db/pw", "allow"),
            row(APP, "/v1/store/secrets", "get", "db/pw", "deny"),
            row(APP, "/v1/nowhere", "-", "", "none"),
            row(APP, "/v1/status", "-", "", "none"),
        ]
    );
    for (line, status) in lines.iter().zip(statuses) {
        assert_eq!(line["status"], status);
        assert!(line["latency_us"].is_u64());
        assert_eq!(line["request_id"].as_str().map(str::len), Some(36));
    }
}

#[tokio::test]
async fn a_request_that_cannot_be_audited_is_refused_and_reveals_nothing() {
    let api = api(true).await;
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "db/pw", "values": {"pw": "s3cret-value"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The same datastore and root key behind a Nexus whose audit log is a full disk.
    let broken = Arc::new(Nexus::new(
        api.nexus.store.clone(),
        Lifecycle::new(2, 3),
        Access::new("td").expect("access"),
        3,
        AuditLog::file(Path::new("/dev/full")).expect("open /dev/full"),
    ));
    let root = api.nexus.keys.root().expect("ready");
    let copy = combine(
        &split(&root, 2, 3).expect("split"),
        2,
        &KeyCheck::compute(&root).expect("check"),
    )
    .expect("combine");
    nexus::keys::install(&broken, copy).await.expect("install");
    let broken = Api {
        router: nexus::api::router(broken.clone(), &ApiLimits::default()),
        nexus: broken,
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    let (status, answer) = broken
        .post(
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "db/pw"}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["err"], "api_internal_error");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("audit log")
    );
    assert!(!answer.to_string().contains("s3cret-value"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_the_lifecycle() {
    let api = api(true).await;
    api.nexus.keys.set_reachable(2);
    for (caller, path) in [(ADMIN, "a"), (ADMIN, "b"), (APP, "a")] {
        api.post(
            caller,
            "/v1/store/secrets?action=get",
            json!({ "path": path }),
        )
        .await;
    }
    api.post(APP, "/v1/nowhere", json!({})).await;
    let registry = nexus::metrics::registry(api.nexus.clone());
    api.nexus.metrics.set_secrets(7);
    let text = common_metrics::encode(&registry).expect("encode");
    let sample = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    // a and b do not exist (404); the app is not allowed (401).
    assert_eq!(
        sample(r#"nexus_http_requests_total{route="/v1/store/secrets",status="404"}"#),
        2.0
    );
    assert_eq!(
        sample(r#"nexus_http_requests_total{route="/v1/store/secrets",status="401"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"nexus_http_requests_total{route="unmatched",status="400"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"nexus_http_request_duration_seconds_count{route="/v1/store/secrets"}"#),
        3.0
    );
    assert_eq!(sample("nexus_sealed"), 0.0);
    assert_eq!(sample("nexus_initialized"), 1.0);
    assert_eq!(sample("nexus_keepers_reachable"), 2.0);
    assert_eq!(sample("nexus_keepers"), 3.0);
    assert_eq!(sample("nexus_secrets"), 7.0);
    assert_eq!(sample("nexus_audit_failures_total"), 0.0);
    // The two reads that reached the store (SQLite) missed the read cache and left their
    // rows (no such secret); reading one again is a hit.
    assert_eq!(sample("nexus_read_cache_misses_total"), 2.0);
    assert_eq!(sample("nexus_read_cache_hits_total"), 0.0);
    assert_eq!(sample("nexus_read_cache_rows"), 2.0);
    api.post(
        ADMIN,
        "/v1/store/secrets?action=get",
        json!({ "path": "a" }),
    )
    .await;
    let text = common_metrics::encode(&registry).expect("encode");
    assert!(
        text.lines().any(|l| l == "nexus_read_cache_hits_total 1"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "nexus_read_cache_suspended 0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_429_with_retry_after_and_others_are_served() {
    let api = api_with(
        true,
        ApiLimits {
            rate_per_second: 1,
            burst: 3,
            ..ApiLimits::default()
        },
    )
    .await;
    let list = || json!({}).to_string().into_bytes();
    let uri = "/v1/store/secrets?action=list";
    // The burst passes at once; the next request of the same caller is refused.
    for _ in 0..3 {
        let (status, _) = api.raw(APP, "POST", uri, list()).await;
        assert_eq!(status, StatusCode::OK);
    }
    let refused = api.response(APP, "POST", uri, list()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let (status, answer) = api.raw(APP, "POST", uri, list()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer["err"], "api_too_many_requests");
    assert!(answer["message"].as_str().unwrap_or_default().contains(APP));
    // Another caller has its own budget.
    let (status, _) = api.raw(ADMIN, "POST", uri, list()).await;
    assert_eq!(status, StatusCode::OK);
    // The refusals are audited like any other answer.
    let refusals = api
        .audit_lines()
        .iter()
        .filter(|l| l["caller"] == APP && l["status"] == 429)
        .count();
    assert_eq!(refusals, 2);
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_api_timeout_and_writes_nothing() {
    use sqlx::{Connection, Executor};
    let api = api_with(
        true,
        ApiLimits {
            request_timeout: std::time::Duration::from_millis(200),
            ..ApiLimits::default()
        },
    )
    .await;
    // Another process holds SQLite's write lock, so the put cannot finish.
    let url = format!("sqlite://{}", api._dir.path().join("nexus.db").display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    blocker.execute("BEGIN IMMEDIATE").await.expect("lock");
    let put = json!({"path": "slow/one", "values": {"k": "v"}});
    let (status, answer) = api.post(ADMIN, "/v1/store/secrets", put.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["err"], "api_timeout");
    blocker.execute("ROLLBACK").await.expect("unlock");
    drop(blocker);
    // Nothing was half-written, and Nexus serves the next request.
    assert!(api.nexus.store.list_paths().await.expect("list").is_empty());
    let (status, answer) = api.post(ADMIN, "/v1/store/secrets", put).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        api.nexus.store.list_paths().await.expect("list"),
        ["slow/one"]
    );
}

const LITE: &str = "spiffe://td/spike/workload/role/lite/app";

#[tokio::test]
async fn cipher_round_trips_in_both_modes_for_allowed_callers_only() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let api = api(true).await;
    let plaintext = b"card 4111-1111-1111-1111".to_vec();

    // JSON mode, as the superuser and as a lite workload.
    for caller in [ADMIN, LITE] {
        let (status, sealed) = api
            .post(
                caller,
                "/v1/cipher/encrypt",
                json!({"plaintext": b64.encode(&plaintext)}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sealed}");
        assert_eq!(sealed["version"], 1);
        assert_eq!(
            b64.decode(sealed["nonce"].as_str().unwrap_or_default())
                .map(|n| n.len())
                .ok(),
            Some(12)
        );
        let (status, opened) = api.post(caller, "/v1/cipher/decrypt", sealed).await;
        assert_eq!(status, StatusCode::OK, "{opened}");
        assert_eq!(
            b64.decode(opened["plaintext"].as_str().unwrap_or_default())
                .ok(),
            Some(plaintext.clone())
        );
    }

    // Stream mode: raw bytes in, 0x01 ‖ nonce ‖ ciphertext out, and back.
    let stream = |caller: &'static str, uri: &'static str, body: Vec<u8>| {
        let api = &api;
        async move {
            let mut request = Request::builder()
                .method("POST")
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(body))
                .expect("request");
            request.extensions_mut().insert(PeerInfo {
                spiffe_id: Some(caller.parse().expect("SPIFFE ID")),
                serial_number: None,
                remote_addr: "127.0.0.1:1".parse().expect("addr"),
            });
            let response = api.router.clone().oneshot(request).await.expect("response");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, bytes.to_vec())
        }
    };
    let (status, sealed) = stream(ADMIN, "/v1/cipher/encrypt", plaintext.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sealed[0], 0x01);
    assert_eq!(sealed.len(), 1 + 12 + plaintext.len() + 16);
    let (status, opened) = stream(ADMIN, "/v1/cipher/decrypt", sealed.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(opened, plaintext);
    // A flipped bit is refused, not decrypted.
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (status, _) = stream(ADMIN, "/v1/cipher/decrypt", tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An ordinary workload needs `execute` on spike/system/cipher/exec.
    let (status, answer) = api
        .post(APP, "/v1/cipher/encrypt", json!({"plaintext": "aGk="}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/acl/policy",
            json!({"name": "cipher", "spiffeidPattern": "^spiffe://td/app/billing$", "pathPattern": "^spike/system/cipher/exec$", "permissions": ["execute"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = api
        .post(APP, "/v1/cipher/encrypt", json!({"plaintext": "aGk="}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // ...and the lite role gets nothing else.
    let (status, _) = api
        .post(
            LITE,
            "/v1/store/secrets?action=get",
            json!({"path": "db/pw"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input: version, nonce length, size.
    for (body, status) in [
        (
            json!({"version": 2, "nonce": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAA"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"version": 1, "nonce": "AAAA", "ciphertext": "AAAA"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"version": 1, "nonce": "not base64!", "ciphertext": "AAAA"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, answer) = api.post(ADMIN, "/v1/cipher/decrypt", body).await;
        assert_eq!(got, status, "{answer}");
    }
    let (status, answer) = api
        .post(
            ADMIN,
            "/v1/cipher/encrypt",
            json!({"plaintext": b64.encode(vec![0u8; 65_521])}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
}

#[tokio::test]
async fn storage_ciphertexts_do_not_decrypt_through_the_cipher() {
    let api = api(true).await;
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "db/pw", "values": {"pw": "hunter2"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let stored = api
        .nexus
        .store
        .get_version("db/pw", 1)
        .await
        .expect("stored");
    for record in [stored.sealed.ciphertext, stored.sealed.wrapped_key] {
        let sealed = nexus_crypto::Sealed::from_bytes(&record).expect("a sealed record");
        let (status, answer) = api
            .post(
                ADMIN,
                "/v1/cipher/decrypt",
                json!({
                    "version": 1,
                    "nonce": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sealed.nonce),
                    "ciphertext": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sealed.ciphertext),
                }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(!answer.to_string().contains("hunter2"));
    }
}

#[tokio::test]
async fn rotation_rewraps_every_data_key_while_readers_and_writers_carry_on() {
    let api = Arc::new(api(true).await);
    for i in 0..40 {
        let (status, _) = api
            .post(
                ADMIN,
                "/v1/store/secrets",
                json!({"path": format!("s/{i}"), "values": {"v": format!("value-{i}")}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/acl/policy",
            json!({"name": "billing", "spiffeidPattern": "^spiffe://td/app/billing$", "pathPattern": "^s/.*$", "permissions": ["read"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let old_root = api.nexus.keys.root().expect("ready");
    // The datastore's record of that key, as a first start stores it.
    let stored = api
        .nexus
        .store
        .initialize(&nexus::store::KeyRecord {
            key_check: nexus_crypto::KeyCheck::compute(&old_root)
                .expect("check")
                .to_bytes(),
            threshold: 2,
            shares: 3,
            created_at: time::OffsetDateTime::now_utc(),
        })
        .await
        .expect("initialise");
    assert!(stored);

    let (status, _) = api.post(APP, "/v1/operator/rotate", json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only the superuser rotates"
    );

    // Readers (through a policy) and writers run before, during and after the rotation.
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for round in 0..30 {
                let i = (worker * 7 + round) % 40;
                let (status, answer) = if worker % 2 == 0 {
                    api.post(APP, "/v1/store/secrets?action=get", json!({"path": format!("s/{i}")}))
                        .await
                } else {
                    api.post(ADMIN, "/v1/store/secrets", json!({"path": format!("w/{worker}"), "values": {"round": round.to_string()}}))
                        .await
                };
                if status != StatusCode::OK {
                    failures.push(format!("{status} {answer}"));
                }
                tokio::task::yield_now().await;
            }
            failures
        }));
    }
    let (status, rotated) = api.post(ADMIN, "/v1/operator/rotate", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    for task in tasks {
        assert_eq!(
            task.await.expect("worker"),
            Vec::<String>::new(),
            "no request failed"
        );
    }
    // 40 secrets (one version each) and the policy, plus whatever the writers had stored.
    assert!(
        rotated["rewrapped"].as_u64().is_some_and(|n| n >= 41),
        "{rotated}"
    );

    let new_root = api.nexus.keys.root().expect("ready");
    assert!(*new_root != *old_root);
    let record = api
        .nexus
        .store
        .key_record()
        .await
        .expect("record")
        .expect("initialised?");
    let check = nexus_crypto::KeyCheck::from_bytes(&record.key_check).expect("check");
    assert!(check.verify(&new_root) && !check.verify(&old_root));
    // No stored data key opens under the old key any more; all of them under the new one.
    let stored = api.nexus.store.get_version("s/0", 0).await.expect("stored");
    assert!(
        nexus::keys::sealing::open_values(&old_root, "s/0", stored.version, &stored.sealed)
            .is_err()
    );
    assert!(
        nexus::keys::sealing::open_values(&new_root, "s/0", stored.version, &stored.sealed).is_ok()
    );
    for i in 0..40 {
        let (status, answer) = api
            .post(
                APP,
                "/v1/store/secrets?action=get",
                json!({"path": format!("s/{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["data"]["v"], format!("value-{i}"));
    }
    // Until keepers confirm their new shards, the record lets the old key find the new one.
    let rotation = api
        .nexus
        .store
        .rotation()
        .await
        .expect("read")
        .expect("unfinished");
    let recovered = nexus::keys::rotation::recover(&old_root, &rotation, &check).expect("recover");
    assert!(recovered == *new_root);
}

#[tokio::test]
async fn the_router_serves_the_authorisation_table_and_nothing_else() {
    use nexus::authz::{self, TABLE};
    use nexus_api::routes::Action;
    let api = api(true).await;
    for route in authz::routes() {
        let takes_actions = TABLE.iter().any(|r| r.route == route && r.action.is_some());
        let actions: Vec<Option<Action>> = if takes_actions {
            Action::ALL.map(Some).to_vec()
        } else {
            vec![None]
        };
        for action in actions {
            let uri = action.map_or_else(|| route.to_owned(), |a| a.url(route));
            let (status, answer) = api.raw(ADMIN, "POST", &uri, b"{}".to_vec()).await;
            let message = answer["message"].as_str().unwrap_or_default();
            assert_ne!(message, "unknown route", "{uri}");
            let refused_action = status == StatusCode::BAD_REQUEST
                && (message.contains("supports only") || message.contains(" have no "));
            let classified = authz::requirement(route, action).is_some();
            assert_eq!(refused_action, !classified, "{uri}: {status} {answer}");
        }
    }
    for uri in ["/v1/store/secretz", "/v1/operator/purge", "/metrics"] {
        let (status, answer) = api.raw(ADMIN, "POST", uri, b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer["message"], "unknown route", "{uri}");
    }
}

#[tokio::test]
async fn a_patch_whose_merged_version_breaks_the_limits_writes_nothing() {
    let api = api(true).await;
    let keys = |range: std::ops::Range<usize>| -> Value {
        range
            .map(|i| (format!("k{i}"), json!("v")))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let (status, answer) = api
        .post(
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "big/one", "values": keys(0..200)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Each request is within the limits; the merge of both is not.
    let (status, answer) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=patch",
            json!({"path": "big/one", "values": keys(200..300)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(
        answer["message"],
        "300 keys in one secret; the limit is 256"
    );
    let meta = api.nexus.store.metadata("big/one").await.expect("metadata");
    assert_eq!(
        (meta.latest_version, meta.versions.len()),
        (1, 1),
        "nothing written, no number used"
    );
    let (status, answer) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=patch",
            json!({"path": "big/one", "values": {"k0": "changed", "new": "n"}}),
        )
        .await;
    assert_eq!(
        (status, &answer["version"]),
        (StatusCode::OK, &json!(2)),
        "{answer}"
    );
    let (_, current) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "big/one"}),
        )
        .await;
    assert_eq!(current["data"]["k0"], "changed");
    assert_eq!(current["data"]["k199"], "v");
    assert_eq!(current["data"]["new"], "n");
}

#[tokio::test]
async fn expired_versions_keep_their_deadline_and_the_periodic_prune_removes_them() {
    let start = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("time");
    let clock = Clock::manual(start);
    let api = api_dated(true, ApiLimits::default(), clock.clone()).await;
    let put = |value: &'static str| {
        api.post(
            ADMIN,
            "/v1/store/secrets",
            json!({"path": "db", "values": {"k": value}}),
        )
    };
    assert_eq!(put("one").await.0, StatusCode::OK);
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets/metadata",
            json!({"path": "db", "deleteVersionAfter": "1m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(put("two").await.0, StatusCode::OK);
    let metadata = || {
        api.post(
            ADMIN,
            "/v1/store/secrets/metadata?action=get",
            json!({"path": "db"}),
        )
    };
    let (_, meta) = metadata().await;
    // Version 1 predates the setting: no deadline. Version 2's is fixed at its write.
    assert!(
        meta["versions"]["1"].get("deletionTime").is_none(),
        "{meta}"
    );
    assert_eq!(
        meta["versions"]["2"]["deletionTime"],
        "2030-03-17T17:47:40Z"
    );
    assert!(meta["versions"]["2"]["deletedTime"].is_null(), "{meta}");

    // Past the deadline: unreadable at once, shown deleted, still stored until pruned.
    clock.set(start + time::Duration::minutes(2));
    let (status, _) = api
        .post(
            ADMIN,
            "/v1/store/secrets?action=get",
            json!({"path": "db", "version": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, meta) = metadata().await;
    assert_eq!(meta["versions"]["2"]["deletedTime"], "2030-03-17T17:47:40Z");

    let pruned = nexus::secrets::prune::prune_round(&api.nexus)
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(api.nexus.metrics.versions_pruned_total(), 1);
    let (_, meta) = metadata().await;
    let versions: Vec<&String> = meta["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    assert_eq!(versions, ["1"], "{meta}");
    assert_eq!(meta["metadata"]["currentVersion"], 1);
    let lines = api.audit_lines();
    let prune = lines
        .iter()
        .find(|l| l["route"] == nexus::secrets::prune::AUDIT_ROUTE)
        .expect("the prune's audit line");
    assert_eq!(prune["path"], "db");
    assert_eq!(prune["action"], "destroy_expired:2");
    assert_eq!(prune["caller"], "nexus");
    assert_eq!(prune["time"], "2030-03-17T17:48:40.000000Z");

    // A second round finds nothing left.
    assert_eq!(
        nexus::secrets::prune::prune_round(&api.nexus)
            .await
            .expect("again"),
        0
    );

    // Sealed, a round prunes nothing: an expired version stays stored.
    assert_eq!(put("three").await.0, StatusCode::OK);
    clock.set(start + time::Duration::minutes(4));
    api.nexus
        .keys
        .seal(nexus::keys::Seal {
            by: ADMIN.to_owned(),
            at: clock.now(),
        })
        .await
        .expect("seal");
    assert_eq!(
        nexus::secrets::prune::prune_round(&api.nexus)
            .await
            .expect("sealed round"),
        0
    );
    let stored = api.nexus.store.metadata("db").await.expect("metadata");
    let versions: Vec<u64> = stored.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [1, 3], "version 3 expired at 3m, still stored");
    assert_eq!(api.nexus.metrics.versions_pruned_total(), 1);
}
