//! Vault KV v2 completeness end to end, through `spike` and the API: per-secret metadata
//! (`max_versions`, `cas_required`, `delete_version_after`, `custom_metadata`), patch,
//! `metadata delete`, listing by prefix in pages, and the global `cas_required` option.

use std::sync::Arc;
use std::time::Duration;

use nexus_api::routes::{self, Action};
use serde_json::{Value, json};
use tests::mtls;
use tests::secrets::{SUPERUSER_ID, SecretsStack, nexus_tls};
use tests::{json as json_of, stderr, stdout};

/// `POST route?action=...` with `body` as the test's SVID; the status and the JSON answer.
async fn api(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    route: &str,
    action: Action,
    body: &Value,
) -> (u16, Value) {
    let answer = mtls::post(tls, port, &action.url(route), &body.to_string())
        .await
        .expect("Nexus answers");
    (answer.status, answer.json())
}

#[tokio::test]
async fn metadata_patch_metadata_delete_and_paged_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_without_nexus(dir.path(), 3, None).await;
    // Expired versions leave storage within a fraction of a second, not a minute.
    stack.nexus_config = "prune_interval = \"200ms\"\n".to_owned();
    stack.start_nexus().await;
    stack.wait_ready().await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let tls = nexus_tls(&source);
    let port = stack.nexus_port;
    let meta_of = |stack: &SecretsStack, path: &str| {
        json_of(&stack.spike_ok(&["secret", "metadata", "get", path, "-f", "json"]))
    };

    for i in 1..=3 {
        stack.spike_ok(&["secret", "put", "kv/app", &format!("user=u{i}"), "pass=p"]);
    }

    // A metadata-only update: settings and labels change, no version is written, and the
    // lowered max_versions prunes version 1 at once.
    stack.spike_ok(&[
        "secret",
        "metadata",
        "put",
        "kv/app",
        "--max-versions",
        "2",
        "--cas-required",
        "true",
        "--delete-version-after",
        "1h",
        "--custom-metadata",
        "owner=team-a",
        "--custom-metadata",
        "tier=gold",
    ]);
    let meta = meta_of(&stack, "kv/app");
    assert_eq!(meta["metadata"]["maxVersions"], 2, "{meta}");
    assert_eq!(meta["metadata"]["casRequired"], true, "{meta}");
    assert_eq!(meta["metadata"]["deleteVersionAfter"], "1h", "{meta}");
    assert_eq!(
        meta["metadata"]["customMetadata"],
        json!({ "owner": "team-a", "tier": "gold" })
    );
    assert_eq!(meta["metadata"]["currentVersion"], 3, "{meta}");
    let versions: Vec<&String> = meta["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    assert_eq!(versions, ["2", "3"]);
    let human = stack.spike_ok(&["secret", "metadata", "get", "kv/app"]);
    for line in [
        "CAS required     true",
        "Delete after     1h",
        "owner: team-a",
    ] {
        assert!(human.contains(line), "{human}");
    }

    // cas_required: a put or patch without --cas is refused and writes nothing.
    for args in [
        vec!["secret", "put", "kv/app", "user=x"],
        vec!["secret", "patch", "kv/app", "pass=x"],
    ] {
        let out = stack.spike(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains("check-and-set is required for writes to kv/app"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(meta_of(&stack, "kv/app")["metadata"]["currentVersion"], 3);

    // Patch merges into the current version, with check-and-set.
    let stale = stack.spike(&["secret", "patch", "kv/app", "pass=x", "--cas", "2"]);
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("check-and-set"),
        "{}",
        stderr(&stale)
    );
    let patched = json_of(&stack.spike_ok(&[
        "secret", "patch", "kv/app", "pass=new", "extra=1", "--cas", "3", "-f", "json",
    ]));
    assert_eq!(patched["version"], 4);
    let current = json_of(&stack.spike_ok(&["secret", "get", "kv/app", "-f", "json"]));
    assert_eq!(
        current,
        json!({ "user": "u3", "pass": "new", "extra": "1" })
    );
    let (status, body) = api(
        &tls,
        port,
        routes::SECRETS,
        Action::Patch,
        &json!({ "path": "kv/app", "values": { "pass": "api" }, "cas": 4 }),
    )
    .await;
    assert_eq!((status, &body["version"]), (200, &json!(5)), "{body}");
    let (status, body) = api(
        &tls,
        port,
        routes::SECRETS,
        Action::Patch,
        &json!({ "path": "kv/none", "values": { "k": "v" } }),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Bad input: a precise 400, and nothing written.
    let before = meta_of(&stack, "kv/app");
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (body, needle) in [
        (
            json!({ "path": "kv/app", "maxVersions": -1 }),
            "maxVersions is -1",
        ),
        (
            json!({ "path": "kv/app", "maxVersions": 3, "deleteVersionAfter": "soon" }),
            "deleteVersionAfter \"soon\" is not a duration",
        ),
        (
            json!({ "path": "kv/app", "deleteVersionAfter": "-1h" }),
            "must not be negative",
        ),
        (
            json!({ "path": "kv/app", "customMetadata": many }),
            "customMetadata has 65 keys; the limit is 64",
        ),
        (
            json!({ "path": "kv/app", "customMetadata": { "k": "v".repeat(513) } }),
            "is 513 bytes; the limit is 512",
        ),
        (
            json!({ "path": "kv/app", "maxVersions": 3, "colour": "red" }),
            "unknown field `colour`",
        ),
    ] {
        let (status, answer) = api(&tls, port, routes::SECRETS_METADATA, Action::Put, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, answer) = api(
        &tls,
        port,
        routes::SECRETS,
        Action::Patch,
        &json!({ "path": "kv/app", "values": { "big": "x".repeat(65 * 1024) }, "cas": 5 }),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let bad_cli = stack.spike(&[
        "secret",
        "metadata",
        "put",
        "kv/app",
        "--max-versions",
        "-1",
    ]);
    assert_eq!(bad_cli.status.code(), Some(2), "{}", stderr(&bad_cli));
    let bad_cli = stack.spike(&[
        "secret",
        "metadata",
        "put",
        "kv/app",
        "--delete-version-after",
        "whenever",
    ]);
    assert!(!bad_cli.status.success());
    assert!(
        stderr(&bad_cli).contains("not a duration"),
        "{}",
        stderr(&bad_cli)
    );
    let after = meta_of(&stack, "kv/app");
    assert_eq!(
        after["metadata"], before["metadata"],
        "a refused update changed nothing"
    );
    assert_eq!(after["versions"], before["versions"]);

    // delete_version_after: a version written under it gets its deletion time (shown as
    // deletionTime), is unreadable from then on, shown deleted when it expired, and
    // removed from storage by the periodic prune without any write. Versions written
    // before keep having no deadline.
    stack.spike_ok(&[
        "secret",
        "metadata",
        "put",
        "kv/app",
        "--delete-version-after",
        "1s",
        "--cas-required",
        "false",
    ]);
    stack.spike_ok(&["secret", "put", "kv/app", "user=short-lived"]);
    let written = meta_of(&stack, "kv/app");
    let v6 = &written["versions"]["6"];
    let at = |field: &str| {
        humantime::parse_rfc3339(v6[field].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{field} ({e}): {written}"))
    };
    assert_eq!(
        at("deletionTime").duration_since(at("createdTime")).ok(),
        Some(Duration::from_secs(1)),
        "deletion time fixed at the write: {written}"
    );
    tests::wait_for(
        "version 6 of kv/app to expire",
        Duration::from_secs(20),
        || async {
            let out = stack.spike(&["secret", "get", "kv/app", "-v", "6"]);
            (!out.status.success()).then_some(())
        },
    )
    .await;
    let kept = meta_of(&stack, "kv/app");
    assert!(
        kept["versions"]["5"].get("deletionTime").is_some(),
        "version 5 was written under 1h: {kept}"
    );
    tests::wait_for(
        "the prune to remove version 6",
        Duration::from_secs(20),
        || {
            let meta = meta_of(&stack, "kv/app");
            async move { meta["versions"].get("6").is_none().then_some(()) }
        },
    )
    .await;
    let pruned = meta_of(&stack, "kv/app");
    let versions: Vec<&String> = pruned["versions"]
        .as_object()
        .expect("versions")
        .keys()
        .collect();
    assert_eq!(versions, ["5"], "{pruned}");
    let audited = stack.audit_lines("internal/prune_expired");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["path"], "kv/app");
    assert_eq!(audited[0]["action"], "destroy_expired:6");
    let metrics = stack.metrics().await;
    assert_eq!(
        tests::metric(&metrics, "nexus_expired_versions_pruned_total", &[]),
        Some(1.0),
        "{metrics}"
    );

    // metadata delete: the secret and every version, for good.
    stack.spike_ok(&["secret", "metadata", "delete", "kv/app", "--yes"]);
    let gone = stack.spike(&["secret", "metadata", "get", "kv/app"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("Secret not found: kv/app"),
        "{}",
        stderr(&gone)
    );
    let (status, _) = api(
        &tls,
        port,
        routes::SECRETS_METADATA,
        Action::Delete,
        &json!({ "path": "kv/app" }),
    )
    .await;
    assert_eq!(status, 404);

    // Listing by prefix, in pages, only what the caller may read.
    for i in 0..25 {
        stack.spike_ok(&["secret", "put", &format!("tree/a/{i:02}"), "k=v"]);
    }
    stack.spike_ok(&["secret", "put", "tree/b/x", "k=v"]);
    stack.spike_ok(&["secret", "put", "other/y", "k=v"]);
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut body = json!({ "prefix": "tree/a/", "limit": 10 });
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let (status, page) = api(&tls, port, routes::SECRETS, Action::List, &body).await;
        assert_eq!(status, 200, "{page}");
        let page_keys = page["keys"].as_array().expect("keys").clone();
        pages.push(page_keys.len());
        keys.extend(page_keys);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, [10, 10, 5]);
    let want: Vec<Value> = (0..25).map(|i| json!(format!("tree/a/{i:02}"))).collect();
    assert_eq!(keys, want);
    // SPIKE's shape: `{}` lists everything, without a cursor.
    let (status, all) = api(&tls, port, routes::SECRETS, Action::List, &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(all["keys"].as_array().map(Vec::len), Some(27), "{all}");
    assert!(all.get("nextCursor").is_none(), "{all}");
    let (status, answer) = api(
        &tls,
        port,
        routes::SECRETS,
        Action::List,
        &json!({ "prefix": "tree/", "limit": 0 }),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit is 0")
    );
    let cli =
        json_of(&stack.spike_ok(&["secret", "list", "tree/", "--page-size", "4", "-f", "json"]));
    assert_eq!(cli.as_array().map(Vec::len), Some(26), "{cli}");

    let reader = stack.workload("tree-reader", "spiffe://example.org/app/tree");
    stack.spike_ok(&[
        "policy",
        "create",
        "--name",
        "tree-reader",
        "--spiffeid-pattern",
        "^spiffe://example\\.org/app/tree$",
        "--path-pattern",
        "^tree/a/1[0-9]$",
        "--permissions",
        "read",
    ]);
    let out = stack.run(
        &reader,
        &["secret", "list", "tree/", "--page-size", "3", "-f", "json"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let want: Vec<String> = (10..20).map(|i| format!("tree/a/{i}")).collect();
    assert_eq!(json_of(&stdout(&out)), json!(want));
    let out = stack.run(
        &reader,
        &["secret", "metadata", "delete", "tree/a/10", "--yes"],
        None,
    );
    assert!(!out.status.success(), "reading does not allow deleting");

    // Every new action is audited with the caller and the decision.
    let metadata_lines = stack.audit_lines(routes::SECRETS_METADATA);
    let count = |action: &str, caller: &str, status: u64| {
        metadata_lines
            .iter()
            .filter(|l| l["action"] == action && l["caller"] == caller && l["status"] == status)
            .count()
    };
    assert!(
        count("delete", SUPERUSER_ID, 200) >= 1,
        "{metadata_lines:?}"
    );
    assert_eq!(count("delete", "spiffe://example.org/app/tree", 401), 1);
    let patches = stack
        .audit_lines(routes::SECRETS)
        .into_iter()
        .filter(|l| l["action"] == "patch" && l["status"] == 200)
        .count();
    assert_eq!(patches, 2);

    // The global option: every write needs check-and-set, whatever the secret says.
    stack.kill_nexus();
    stack.nexus_config.push_str("cas_required = true\n");
    stack.start_nexus().await;
    stack.wait_ready().await;
    let refused = stack.spike(&["secret", "put", "tree/b/x", "k=w"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("check-and-set is required"),
        "{}",
        stderr(&refused)
    );
    stack.spike_ok(&["secret", "put", "tree/b/x", "k=w", "--cas", "1"]);
    stack.spike_ok(&["secret", "put", "brand/new", "k=w", "--cas", "0"]);
}
