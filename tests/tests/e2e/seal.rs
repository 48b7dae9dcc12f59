//! An operator's seal end to end (`spike operator seal|unseal`), as real processes over real
//! mTLS: the root key leaves Nexus's memory at once, data requests answer 503 "sealed",
//! status says who sealed it and when, a Nexus killed and restarted stays sealed although
//! its keepers still hold their shards, only the superuser seals and unseals, and with two
//! replicas on PostgreSQL a seal through one seals the other.

use std::time::{Duration, SystemTime};

use common_sql::testing::TestDatabase;
use nexus_api::{ClientError, ErrorCode};
use serde_json::Value;
use tests::secrets::{SUPERUSER_ID, SecretsStack, values};

use super::replicas::two_replicas;
use tests::{metric_value, stderr, stdout};

const PASSWORD: &str = "sealed-Pa55word-8c1d07";

/// A request refused because Nexus is sealed: 503 `state_not_ready` saying so.
fn assert_sealed_answer<T: std::fmt::Debug>(result: Result<T, ClientError>) {
    match result {
        Err(ClientError::Api {
            status: 503,
            code: ErrorCode::NotReady,
            message,
        }) => assert!(message.starts_with("Nexus is sealed"), "{message}"),
        other => panic!("expected 503 sealed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_seal_drops_the_key_holds_through_a_restart_and_only_the_superuser_lifts_it() {
    tests::bin_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    let client = stack.client(&source);
    client
        .put_secret("db/password", values(&[("password", PASSWORD)]), None)
        .await
        .expect("put");

    // A workload a policy grants everything on every path still holds no role.
    let ops = stack.workload("ops-tool", "spiffe://example.org/ops/tool");
    stack.spike_ok(&[
        "policy",
        "create",
        "--name",
        "ops-everything",
        "--spiffeid-pattern",
        "^spiffe://example\\.org/ops/tool$",
        "--path-pattern",
        ".*",
        "--permissions",
        "read,write,list,super",
    ]);
    let refused = stack.run(&ops, &["operator", "seal"], None);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("Not authorised")
            && stderr(&refused).contains("spiffe://example.org/ops/tool"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(stack.status_at(&stack.nexus_url())["state"], "ready");
    assert_eq!(
        stack
            .run(&ops, &["secret", "get", "db/password", "password"], None)
            .stdout,
        format!("{PASSWORD}\n").into_bytes(),
        "the refused seal changed nothing"
    );

    // The seal.
    let before = SystemTime::now() - Duration::from_secs(1);
    let sealed = stack.spike_ok(&["operator", "seal"]);
    let after = SystemTime::now() + Duration::from_secs(1);
    assert!(
        sealed.starts_with(&format!("Nexus is sealed by {SUPERUSER_ID} at ")),
        "{sealed}"
    );

    // Every data route answers 503 "sealed", through the API and through `spike`.
    assert_sealed_answer(client.get_secret("db/password", 0).await);
    assert_sealed_answer(
        client
            .put_secret("db/other", values(&[("k", "v")]), None)
            .await,
    );
    let read = stack.spike(&["secret", "get", "db/password"]);
    assert!(!read.status.success());
    assert!(
        stderr(&read).contains("Nexus is sealed: an operator (spiffe://example.org/spike/pilot/role/superuser) sealed it at"),
        "{}",
        stderr(&read)
    );
    assert!(!stdout(&read).contains(PASSWORD));

    // Status: who and when; `spike status` exits 3 (answered, not ready).
    let human = stack.spike(&["status"]);
    assert_eq!(human.status.code(), Some(3), "{}", stderr(&human));
    assert!(
        stdout(&human).contains("State: sealed\n")
            && stdout(&human).contains(&format!("Sealed by: {SUPERUSER_ID} at ")),
        "{}",
        stdout(&human)
    );
    let status = stack.status_at(&stack.nexus_url());
    assert_eq!(status["state"], "sealed");
    assert_eq!(status["operatorSeal"]["by"], SUPERUSER_ID);
    let at = status["operatorSeal"]["at"]
        .as_str()
        .expect("at")
        .to_owned();
    let when = humantime::parse_rfc3339(&at).expect("RFC 3339");
    assert!(before <= when && when <= after, "sealed at {at}");

    // A second seal, and a seal or unseal by anyone else, is refused.
    let again = stack.spike(&["operator", "seal"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already sealed") && stderr(&again).contains(&at),
        "{}",
        stderr(&again)
    );
    let refused = stack.run(&ops, &["operator", "unseal"], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Not authorised"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        stack.status_at(&stack.nexus_url())["operatorSeal"]["at"],
        at.as_str()
    );

    let metrics = stack.metrics().await;
    assert_eq!(metric_value(&metrics, "nexus_sealed"), 1.0);
    assert_eq!(metric_value(&metrics, "nexus_sealed_by_operator"), 1.0);
    assert_eq!(metric_value(&metrics, "nexus_operator_seals_total"), 1.0);

    // Killed and restarted, Nexus finds the stored seal and asks no keeper, though all three
    // still hold their shards.
    stack.kill_nexus();
    stack.start_nexus().await;
    tests::wait_for(
        "the restarted Nexus to find the seal",
        Duration::from_secs(60),
        || {
            let log = stack.nexus_log();
            async move {
                log.contains(
                    "sealed by an operator (through another Nexus, or before this one started)",
                )
                .then_some(())
            }
        },
    )
    .await;
    let status = stack.status_at(&stack.nexus_url());
    assert_eq!(status["state"], "sealed");
    assert_eq!(status["operatorSeal"]["by"], SUPERUSER_ID);
    assert_eq!(status["operatorSeal"]["at"], at.as_str());
    assert_sealed_answer(client.get_secret("db/password", 0).await);
    assert!(
        !stack.nexus_log().contains("Nexus is ready"),
        "the restarted Nexus unsealed by itself:\n{}",
        stack.nexus_log()
    );
    let metrics = stack.metrics().await;
    assert_eq!(metric_value(&metrics, "nexus_sealed_by_operator"), 1.0);

    // The unseal: the key comes back from the keepers.
    let unsealed = stack.spike_ok(&["operator", "unseal"]);
    assert!(
        unsealed.starts_with("Nexus is unsealed and ready"),
        "{unsealed}"
    );
    assert_eq!(
        client
            .get_secret("db/password", 0)
            .await
            .expect("read")
            .data["password"],
        PASSWORD
    );
    assert_eq!(
        stack.spike_get("db/password", "password"),
        format!("{PASSWORD}\n")
    );
    let status = stack.status_at(&stack.nexus_url());
    assert_eq!(status["state"], "ready");
    assert!(status.get("operatorSeal").is_none(), "{status}");
    let again = stack.spike(&["operator", "unseal"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("not sealed by an operator"),
        "{}",
        stderr(&again)
    );
    let metrics = stack.metrics().await;
    assert_eq!(metric_value(&metrics, "nexus_sealed"), 0.0);
    assert_eq!(metric_value(&metrics, "nexus_sealed_by_operator"), 0.0);
    assert_eq!(metric_value(&metrics, "nexus_operator_unseals_total"), 1.0);

    // The audit log says who sealed and unsealed, and whom it refused.
    let seals = stack.audit_lines("/v1/operator/seal");
    let by = |lines: &[Value], caller: &str, status: u64, decision: &str| {
        lines
            .iter()
            .filter(|l| l["caller"] == caller && l["status"] == status && l["decision"] == decision)
            .count()
    };
    assert_eq!(by(&seals, SUPERUSER_ID, 200, "allow"), 1, "{seals:?}");
    assert_eq!(by(&seals, SUPERUSER_ID, 409, "allow"), 1, "{seals:?}");
    assert_eq!(by(&seals, "spiffe://example.org/ops/tool", 401, "deny"), 1);
    let unseals = stack.audit_lines("/v1/operator/unseal");
    assert_eq!(by(&unseals, SUPERUSER_ID, 200, "allow"), 1, "{unseals:?}");
    assert_eq!(
        by(&unseals, "spiffe://example.org/ops/tool", 401, "deny"),
        1
    );
}

#[tokio::test]
async fn a_seal_through_one_replica_seals_the_other_and_an_unseal_through_it_lifts_both() {
    tests::bin_dir();
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (stack, a, b) = two_replicas(dir.path(), &db).await;
    stack.spike_put_at(&a, "db/password", "password", PASSWORD);
    assert_eq!(
        stack.spike_get_at(&b, "db/password", "password"),
        format!("{PASSWORD}\n")
    );

    stack.spike_ok_at(&a, &["operator", "seal"]);
    // Right away, B stores nothing: its write fence reads the stored seal.
    let write = stack.spike_at(&b, &["secret", "put", "db/password", "password=after-seal"]);
    assert!(!write.status.success(), "{}", stdout(&write));
    assert!(
        stderr(&write).contains("Nexus is sealed"),
        "{}",
        stderr(&write)
    );
    // And B drops its key as soon as the notification reaches it.
    let status = tests::wait_for("B to be sealed", Duration::from_secs(20), || {
        let status = stack.status_at(&b);
        async move { (status["state"] == "sealed").then_some(status) }
    })
    .await;
    assert_eq!(status["operatorSeal"]["by"], SUPERUSER_ID);
    let read = stack.spike_at(&b, &["secret", "get", "db/password", "password"]);
    assert!(!read.status.success());
    assert!(
        stderr(&read).contains("Nexus is sealed: an operator"),
        "{}",
        stderr(&read)
    );
    assert!(!stdout(&read).contains(PASSWORD));

    // Unsealed through B, A unseals too, from the keepers.
    let unsealed = stack.spike_ok_at(&b, &["operator", "unseal"]);
    assert!(
        unsealed.starts_with("Nexus is unsealed and ready"),
        "{unsealed}"
    );
    tests::wait_for("A to be ready", Duration::from_secs(20), || {
        let ready = stack.status_at(&a)["state"] == "ready";
        async move { ready.then_some(()) }
    })
    .await;
    for url in [&a, &b] {
        assert_eq!(
            stack.spike_get_at(url, "db/password", "password"),
            format!("{PASSWORD}\n"),
            "at {url}: the write refused while sealed left nothing"
        );
    }
}
