//! The admin commands operators script, against the real server: `agent ban|count|purge`,
//! `entry count`, batches with `entry create -data` and `entry delete -file` (SPIRE's JSON,
//! per-entry results, nothing half-written). Federation relationships created at run time are
//! in `runtime_federation.rs`.

use std::time::Duration;

use tests::stack::{Agent, Server};
use tests::x509pop::{NodePki, node_pki};
use tests::{json, wait_for};

const TD: &str = "example.org";

#[tokio::test]
async fn a_banned_agent_cannot_attest_again_until_it_is_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let NodePki {
        ca_path,
        agent_config,
        ..
    } = node_pki(&dir.path().join("pki"), "node-1");
    let server = tests::x509pop::start_server(dir.path(), TD, &ca_path).await;
    let agent_dir = dir.path().join("agent");
    let flags = ["-config", agent_config.to_str().expect("UTF-8")];
    let mut agent = Agent::start_with(&server, &agent_dir, None, &flags).await;
    assert_eq!(
        json(&server.cli_ok(&["agent", "count", "-output", "json"]))["count"],
        1
    );
    assert_eq!(
        server.cli_ok(&["agent", "count"]).trim(),
        "1 attested agent"
    );
    let id = server.agent_ids().pop().expect("agent");

    server.cli_ok(&["agent", "ban", "-spiffeID", &id]);
    let listed = json(&server.cli_ok(&["agent", "list", "-output", "json"]));
    assert_eq!(listed["agents"][0]["banned"], true);
    // Restarted with no SVID, it tries to attest with its certificate and is refused.
    agent.process.kill();
    std::fs::remove_dir_all(&agent.data_dir).expect("wipe agent data");
    let mut refused = Agent::spawn_with(&server, &agent_dir, None, &server.write_bundle(), &flags);
    let status = refused.process.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(
        refused.process.log().contains("banned"),
        "{}",
        refused.process.log()
    );

    // Evicted, it may attest again.
    server.cli_ok(&["agent", "evict", "-spiffeID", &id]);
    let _again = Agent::start_with(&server, &agent_dir, None, &flags).await;
    assert_eq!(server.agent_ids(), vec![id.clone()]);
    let listed = json(&server.cli_ok(&["agent", "list", "-output", "json"]));
    assert_eq!(listed["agents"][0]["banned"], false);

    // Bad input: a clear error, nothing changed.
    let out = server.cli(&[
        "agent",
        "ban",
        "-spiffeID",
        "spiffe://example.org/spire/agent/x/none",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no attested agent"));
    let out = server.cli(&["agent", "purge", "-expiredFor", "soon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid -expiredFor"));
    // Its SVID is fresh: a purge of agents expired for an hour leaves it.
    let purged = json(&server.cli_ok(&["agent", "purge", "-expiredFor", "1h", "-output", "json"]));
    assert_eq!(purged["expired_agents"].as_array().map(Vec::len), Some(0));
    assert_eq!(server.agent_ids(), vec![id]);
}

#[tokio::test]
async fn expired_agents_are_purged_and_dry_runs_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-agentTTL", "2s", "-defaultX509SVIDTTL", "2s"],
    )
    .await;
    let token = server.join_token(&[]);
    let mut agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    agent.process.kill();
    // Its SVID lapses two seconds after its last renewal and is never renewed again.
    let dry = wait_for(
        "the agent's SVID to expire",
        Duration::from_secs(20),
        || {
            let out = server.cli_ok(&[
                "agent",
                "purge",
                "-expiredFor",
                "1s",
                "-dryRun",
                "-output",
                "json",
            ]);
            async move {
                let dry = json(&out);
                (dry["expired_agents"].as_array().map(Vec::len) == Some(1)).then_some(dry)
            }
        },
    )
    .await;
    assert_eq!(dry["expired_agents"][0]["deleted"], false);
    assert_eq!(server.agent_ids().len(), 1, "a dry run deletes nothing");
    let out = server.cli_ok(&["agent", "purge", "-expiredFor", "1s"]);
    assert!(out.contains("Found 1 expired agent"), "{out}");
    assert!(out.contains("Agents purged: 1"), "{out}");
    assert!(server.agent_ids().is_empty());
}

#[tokio::test]
async fn entries_are_created_and_deleted_in_batches_with_per_entry_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let data = dir.path().join("entries.json");
    std::fs::write(
        &data,
        r#"{"entries": [
            {"spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/node",
             "selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 200,
             "dns_names": ["a.example.org"], "admin": true},
            {"spiffe_id": "spiffe://example.org/spire/server", "parent_id": "spiffe://example.org/node",
             "selectors": [{"type": "unix", "value": "uid:2"}]},
            {"spiffe_id": "spiffe://example.org/b", "parent_id": "spiffe://example.org/node",
             "selectors": [{"type": "unix", "value": "uid:3"}], "jwt_svid_ttl": 30, "hint": "b"}
        ]}"#,
    )
    .expect("data");
    let out = server.cli(&[
        "entry",
        "create",
        "-data",
        data.to_str().expect("UTF-8"),
        "-output",
        "json",
    ]);
    assert!(
        !out.status.success(),
        "one entry is refused, so the command fails"
    );
    let results = json(&String::from_utf8_lossy(&out.stdout));
    let results = results["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["status"]["code"], 0);
    assert_eq!(results[0]["entry"]["x509_svid_ttl"], 200);
    assert_eq!(results[0]["entry"]["admin"], true);
    assert_eq!(results[1]["status"]["code"], 3, "InvalidArgument");
    assert!(
        results[1]["status"]["message"]
            .as_str()
            .expect("message")
            .contains("reserved namespace")
    );
    assert_eq!(results[2]["status"]["code"], 0);
    assert_eq!(results[2]["entry"]["hint"], "b");
    assert_eq!(
        json(&server.cli_ok(&["entry", "count", "-output", "json"]))["count"],
        2
    );
    assert_eq!(
        server.cli_ok(&["entry", "count"]).trim(),
        "2 registration entries"
    );

    // The same file again: each entry is reported as it fares (duplicates refused).
    let again = server.cli(&["entry", "create", "-data", data.to_str().expect("UTF-8")]);
    let pretty = String::from_utf8_lossy(&again.stdout);
    assert_eq!(
        pretty
            .matches("Failed to create the following entry")
            .count(),
        3,
        "{pretty}"
    );
    assert!(pretty.contains("AlreadyExists"), "{pretty}");

    // A file that is not SPIRE's JSON is refused before anything is sent.
    std::fs::write(&data, r#"{"entries": [{"spiffe_id": 7}]}"#).expect("data");
    let bad = server.cli(&["entry", "create", "-data", data.to_str().expect("UTF-8")]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not SPIRE's entries JSON"));
    assert_eq!(
        json(&server.cli_ok(&["entry", "count", "-output", "json"]))["count"],
        2
    );

    let ids: Vec<String> = results
        .iter()
        .filter_map(|r| {
            r["entry"]["id"]
                .as_str()
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
        })
        .collect();
    let file = dir.path().join("ids.json");
    std::fs::write(
        &file,
        serde_json::json!({ "ids": [ids[0], "no-such-entry", ids[1]] }).to_string(),
    )
    .expect("ids");
    let out = server.cli(&["entry", "delete", "-file", file.to_str().expect("UTF-8")]);
    assert!(!out.status.success());
    let pretty = String::from_utf8_lossy(&out.stdout);
    assert!(
        pretty.contains(&format!("Deleted entry with ID: {}", ids[0])),
        "{pretty}"
    );
    assert!(
        pretty.contains("Failed to delete entry with ID no-such-entry (code: NotFound"),
        "{pretty}"
    );
    assert!(
        pretty.contains(&format!("Deleted entry with ID: {}", ids[1])),
        "{pretty}"
    );
    assert_eq!(
        json(&server.cli_ok(&["entry", "count", "-output", "json"]))["count"],
        0
    );
}
