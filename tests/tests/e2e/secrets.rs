//! The secrets plane end to end: identity server and agent, three keepers, Nexus and the
//! `spike` CLI as real processes over real mTLS.

use std::path::Path;
use std::time::{Duration, Instant};

use tests::secrets::SecretsStack;
use tests::{json, stderr, stdout};

/// Values written by these tests; none may appear in the datastore or any log.
const PASSWORD: &str = "s3cr3t-Pa55word-0e8f1c";
const API_KEY: &str = "api-key-7d41b2a9c3";
const FILE_SECRET: &str = "from-a-file-5be0d6";

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn secrets_policies_and_workloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = SecretsStack::start(dir.path(), 3).await;

    // Versions, from arguments, stdin and a file (so values need not be in shell history).
    assert!(
        stack
            .spike_ok(&[
                "secret",
                "put",
                "db/password",
                "user=app",
                &format!("password={PASSWORD}")
            ])
            .contains("OK")
    );
    let out = stack.run(
        &tests::bin("spike"),
        &[
            "secret",
            "put",
            "db/password",
            "user=app",
            "password=-",
            "-f",
            "json",
        ],
        Some(format!("{PASSWORD}-v2\n").as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&stdout(&out))["version"], 2);
    let file = dir.path().join("api-key.txt");
    std::fs::write(&file, FILE_SECRET).expect("write");
    stack.spike_ok(&[
        "secret",
        "put",
        "apps/billing/key",
        &format!("key=@{}", file.display()),
    ]);
    stack.spike_put("apps/other/key", "key", API_KEY);

    let current = json(&stack.spike_ok(&["secret", "get", "db/password", "-f", "json"]));
    assert_eq!(current["password"], format!("{PASSWORD}-v2"));
    assert_eq!(
        stack
            .spike_ok(&["secret", "get", "db/password", "password", "-v", "1"])
            .trim(),
        PASSWORD
    );
    assert_eq!(
        stack.spike_get("apps/billing/key", "key").trim(),
        FILE_SECRET
    );

    // Check-and-set: a writer holding a stale version is refused and nothing changes.
    let stale = stack.spike(&[
        "secret",
        "put",
        "db/password",
        "password=lost",
        "--cas",
        "1",
    ]);
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).to_lowercase().contains("check-and-set"),
        "{}",
        stderr(&stale)
    );
    stack.spike_ok(&[
        "secret",
        "put",
        "db/password",
        "user=app",
        &format!("password={PASSWORD}-v3"),
        "--cas",
        "2",
    ]);

    // Metadata, soft delete, undelete.
    let meta = json(&stack.spike_ok(&["secret", "metadata", "get", "db/password", "-f", "json"]));
    assert_eq!(meta["metadata"]["currentVersion"], 3);
    assert_eq!(meta["metadata"]["maxVersions"], 10);
    assert_eq!(
        meta["versions"]["1"]["createdBy"],
        tests::secrets::SUPERUSER_ID
    );
    stack.spike_ok(&["secret", "delete", "db/password", "-v", "3"]);
    assert_eq!(
        stack.spike_get("db/password", "password").trim(),
        format!("{PASSWORD}-v2")
    );
    let gone = stack.spike(&["secret", "get", "db/password", "-v", "3"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).to_lowercase().contains("not found"),
        "{}",
        stderr(&gone)
    );
    stack.spike_ok(&["secret", "undelete", "db/password", "-v", "3"]);
    assert_eq!(
        stack.spike_get("db/password", "password").trim(),
        format!("{PASSWORD}-v3")
    );

    // Destroy removes a secret for good.
    stack.spike_ok(&["secret", "put", "tmp/scratch", "k=v"]);
    stack.spike_ok(&["secret", "destroy", "tmp/scratch", "--yes"]);
    let list = json(&stack.spike_ok(&["secret", "list", "-f", "json"]));
    assert_eq!(
        list,
        serde_json::json!(["apps/billing/key", "apps/other/key", "db/password"])
    );

    // A granted workload reads what its policy allows and lists only that; an ungranted one
    // is told who it is and that it is not authorised.
    let billing = stack.workload("billing-app", "spiffe://example.org/app/billing");
    let stranger = stack.workload("stranger-app", "spiffe://example.org/app/stranger");
    let policy = dir.path().join("billing.yaml");
    std::fs::write(
        &policy,
        "name: billing\nspiffeidPattern: ^spiffe://example\\.org/app/billing$\npathPattern: ^apps/billing/.*$\npermissions: [read, list]\n",
    )
    .expect("policy file");
    stack.spike_ok(&["policy", "apply", "--file", &policy.display().to_string()]);
    let policies = json(&stack.spike_ok(&["policy", "list", "-f", "json"]));
    assert_eq!(policies[0]["name"], "billing");

    let read = stack.run(
        &billing,
        &["secret", "get", "apps/billing/key", "key"],
        None,
    );
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(stdout(&read).trim(), FILE_SECRET);
    let listed = stack.run(&billing, &["secret", "list", "-f", "json"], None);
    assert_eq!(
        json(&stdout(&listed)),
        serde_json::json!(["apps/billing/key"])
    );
    for (who, args) in [
        (&billing, vec!["secret", "get", "apps/other/key"]),
        (
            &billing,
            vec!["secret", "put", "apps/billing/key", "key=overwrite"],
        ),
        (&stranger, vec!["secret", "get", "apps/billing/key"]),
    ] {
        let out = stack.run(who, &args, None);
        assert!(!out.status.success(), "{args:?} must be refused");
        let err = stderr(&out);
        assert!(err.contains("Not authorised"), "{err}");
        assert!(err.contains("spiffe://example.org/app/"), "{err}");
    }
    let stranger_list = stack.run(&stranger, &["secret", "list", "-f", "json"], None);
    assert_eq!(json(&stdout(&stranger_list)), serde_json::json!([]));

    // Revoking the policy takes effect at once.
    stack.spike_ok(&["policy", "delete", "billing", "--yes"]);
    let revoked = stack.run(&billing, &["secret", "get", "apps/billing/key"], None);
    assert!(!revoked.status.success());

    // The audit log names who did what, with the decision and the outcome.
    let audit = std::fs::read_to_string(stack.audit_log()).expect("audit log");
    let billing_reads: Vec<(String, u64)> = audit
        .lines()
        .map(json)
        .filter(|l| {
            l["caller"] == "spiffe://example.org/app/billing"
                && l["action"] == "get"
                && l["path"] == "apps/billing/key"
        })
        .map(|l| {
            (
                l["decision"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        billing_reads,
        [("allow".to_owned(), 200), ("deny".to_owned(), 401)],
        "the granted read, then the read after revocation"
    );

    // Encryption as a service: a round trip through `spike cipher`, refused to a workload
    // without `execute` on the cipher.
    let message = b"ledger entry 42";
    let sealed = stack.run(&tests::bin("spike"), &["cipher", "encrypt"], Some(message));
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    assert_eq!(
        sealed.stdout.first(),
        Some(&1u8),
        "stream format 0x01 ‖ nonce ‖ ciphertext"
    );
    let opened = stack.run(
        &tests::bin("spike"),
        &["cipher", "decrypt"],
        Some(&sealed.stdout),
    );
    assert!(opened.status.success(), "{}", stderr(&opened));
    assert_eq!(opened.stdout, message);
    let refused = stack.run(&billing, &["cipher", "encrypt"], Some(message));
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("spike/system/cipher/exec"),
        "{}",
        stderr(&refused)
    );

    // Prometheus metrics on the plain-HTTP metrics port.
    let metrics = stack.metrics().await;
    let sample = |name: &str, labels: &[(&str, &str)]| tests::metric(&metrics, name, labels);
    assert_eq!(sample("nexus_sealed", &[]), Some(0.0), "{metrics}");
    assert_eq!(sample("nexus_keepers_reachable", &[]), Some(3.0));
    assert_eq!(sample("nexus_secrets", &[]), Some(3.0));
    assert!(sample("nexus_unseal_duration_seconds", &[]).is_some_and(|s| s > 0.0));
    let refused = [("route", "/v1/store/secrets"), ("status", "401")];
    assert!(
        sample("nexus_http_requests_total", &refused).is_some_and(|n| n >= 4.0),
        "{metrics}"
    );

    // No secret value at rest or in any log.
    for path in files(dir.path()) {
        if path.extension().is_some_and(|e| e == "txt") || path.starts_with(dir.path().join("bin"))
        {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        for value in [PASSWORD, API_KEY, FILE_SECRET] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds a secret value",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn nexus_unseals_itself_and_reseeds_keepers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    stack.spike_put("db/password", "password", PASSWORD);

    // Restart with one of three keepers unreachable (stopped, shard still in its memory).
    let stop = |stack: &SecretsStack, i: usize, signal| {
        let pid = stack.keepers[i].as_ref().expect("keeper").pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
    };
    stack.kill_nexus();
    stop(&stack, 0, nix::sys::signal::Signal::SIGSTOP);
    let started = Instant::now();
    stack.start_nexus().await;
    stack.wait_ready().await;
    println!(
        "restart to ready with one keeper down: {:?}",
        started.elapsed()
    );
    assert_eq!(stack.spike_get("db/password", "password").trim(), PASSWORD);

    // With two of three unreachable it stays sealed and says why...
    stack.kill_nexus();
    stop(&stack, 1, nix::sys::signal::Signal::SIGSTOP);
    stack.start_nexus().await;
    let status = tests::wait_for("spike status to answer", Duration::from_secs(30), || {
        let out = stack.spike(&["status", "-f", "json"]);
        let answered = out.status.code() == Some(3);
        async move { answered.then_some(out) }
    })
    .await;
    let body = json(&stdout(&status));
    assert_eq!(body["state"], "sealed");
    assert_eq!(body["keepers"]["threshold"], 2);
    let refused = stack.spike(&["secret", "get", "db/password"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not ready"),
        "{}",
        stderr(&refused)
    );

    // ...and unseals once they are back.
    stop(&stack, 0, nix::sys::signal::Signal::SIGCONT);
    stop(&stack, 1, nix::sys::signal::Signal::SIGCONT);
    stack.wait_ready().await;
    assert_eq!(stack.spike_get("db/password", "password").trim(), PASSWORD);

    // A keeper restarted empty gets its shard back within seconds...
    stack.kill_keeper(2);
    stack.start_keeper(2);
    tests::wait_for("Nexus to re-seed keeper 3", Duration::from_secs(30), || {
        let reseeded = stack.nexus_log().contains("re-seeded");
        async move { reseeded.then_some(()) }
    })
    .await;
    // ...which is proven by unsealing without keeper 1.
    stack.kill_nexus();
    stack.kill_keeper(0);
    stack.start_nexus().await;
    stack.wait_ready().await;
    assert_eq!(stack.spike_get("db/password", "password").trim(), PASSWORD);
}

#[tokio::test]
async fn break_glass_drill_recovers_after_every_keeper_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    stack.spike_put("db/password", "password", PASSWORD);
    let recover = stack.workload(
        "spike-recover",
        "spiffe://example.org/spike/pilot/role/recover",
    );
    let restore = stack.workload(
        "spike-restore",
        "spiffe://example.org/spike/pilot/role/restore",
    );

    // The admin may not export shards; the recover role writes them to private files.
    let shards_dir = dir.path().join("recovery");
    let denied = stack.spike(&[
        "operator",
        "recover",
        "--dir",
        &shards_dir.display().to_string(),
    ]);
    assert!(!denied.status.success());
    let out = stack.run(
        &recover,
        &[
            "operator",
            "recover",
            "--dir",
            &shards_dir.display().to_string(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut shard_files: Vec<_> = files(&shards_dir);
    shard_files.sort();
    assert_eq!(shard_files.len(), 3);
    for file in &shard_files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }

    // Disaster: Nexus and every keeper die; they come back empty and Nexus stays sealed.
    stack.kill_nexus();
    for i in 0..3 {
        stack.kill_keeper(i);
        stack.start_keeper(i);
    }
    stack.start_nexus().await;
    tests::wait_for("Nexus to answer sealed", Duration::from_secs(30), || {
        let sealed = stack.spike(&["status"]).status.code() == Some(3);
        async move { sealed.then_some(()) }
    })
    .await;

    // Restore, one shard per call from stdin: a malformed one and a duplicate are refused.
    let shard = |i: usize| std::fs::read(&shard_files[i]).expect("shard file");
    let bad = stack.run(&restore, &["operator", "restore"], Some(b"spike:1:zz\n"));
    assert!(!bad.status.success());
    let first = stack.run(&restore, &["operator", "restore"], Some(&shard(0)));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("remaining: 1"),
        "{}",
        stdout(&first)
    );
    let again = stack.run(&restore, &["operator", "restore"], Some(&shard(0)));
    assert!(!again.status.success(), "a duplicate shard is refused");
    let last = stack.run(&restore, &["operator", "restore"], Some(&shard(2)));
    assert!(last.status.success(), "{}", stderr(&last));
    assert!(stdout(&last).contains("restored"), "{}", stdout(&last));
    assert_eq!(stack.spike_get("db/password", "password").trim(), PASSWORD);
    let refused = stack.run(&restore, &["operator", "restore"], Some(&shard(1)));
    assert!(
        !refused.status.success(),
        "an unsealed Nexus refuses restore"
    );

    // The keepers were re-seeded: a plain restart unseals without anyone's help.
    tests::wait_for(
        "every keeper to be re-seeded",
        Duration::from_secs(30),
        || {
            let reseeded = stack.nexus_log().matches("re-seeded").count() >= 3;
            async move { reseeded.then_some(()) }
        },
    )
    .await;
    stack.restart_nexus().await;
    assert_eq!(stack.spike_get("db/password", "password").trim(), PASSWORD);
}

#[tokio::test]
async fn legacy_apps_get_secrets_through_exec_and_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = SecretsStack::start(dir.path(), 3).await;
    stack.spike_ok(&[
        "secret",
        "put",
        "db/password",
        "user=app",
        &format!("password={PASSWORD}"),
    ]);

    // exec: the child sees the value in its environment and its exit code comes through.
    let out = std::process::Command::new(tests::bin("spike"))
        .args([
            "exec",
            "--secret",
            "db/password:password=DB_PASSWORD",
            "--",
            "sh",
            "-c",
        ])
        .arg("test \"$DB_PASSWORD\" = \"$EXPECTED\" && exit 7")
        .env("SPIFFE_ENDPOINT_SOCKET", stack.agent.endpoint())
        .env("SPIKE_NEXUS_API_URL", stack.nexus_url())
        .env("EXPECTED", PASSWORD)
        .output()
        .expect("spike exec");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let missing = stack.spike(&["exec", "--secret", "db/nothing=X", "--", "true"]);
    assert!(
        !missing.status.success(),
        "no child runs without its secrets"
    );

    // render: a 0600 file from a template, rewritten when the secret changes.
    let template = dir.path().join("app.conf.tmpl");
    let rendered = dir.path().join("app.conf");
    std::fs::write(&template, "user = {{ secret \"db/password\" \"user\" }}\n").expect("template");
    let args = [
        "render",
        "--template",
        &template.display().to_string(),
        "--out",
        &rendered.display().to_string(),
    ]
    .map(str::to_owned);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stack.spike_ok(&args);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&rendered)
        .expect("rendered")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&rendered).expect("read"),
        "user = app\n"
    );
    stack.spike_ok(&["secret", "put", "db/password", "user=app2", "password=x"]);
    stack.spike_ok(&args);
    assert_eq!(
        std::fs::read_to_string(&rendered).expect("read"),
        "user = app2\n"
    );
}

/// Root key rotation over real processes: online, then interrupted by `kill -9` at the worst
/// moment (new key committed, two of three keepers still holding shards of the old one), and
/// completed by the next start with no human step.
#[tokio::test]
async fn root_key_rotation_survives_kill_9_between_commit_and_keepers() {
    use nix::sys::signal::Signal;
    const SECRETS: usize = 30;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    for i in 0..SECRETS {
        stack.spike_ok(&["secret", "put", &format!("r/{i}"), &format!("v=value-{i}")]);
    }
    let read_all = |stack: &SecretsStack| {
        for i in 0..SECRETS {
            let value = stack.spike_ok(&["secret", "get", &format!("r/{i}"), "v"]);
            assert_eq!(value.trim(), format!("value-{i}"));
        }
    };
    let signal = |stack: &SecretsStack, i: usize, signal| {
        let pid = stack.keepers[i].as_ref().expect("keeper").pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("signal");
    };

    // Online: every data key re-wrapped, keepers re-seeded, the rotation record gone.
    let rotated = json(&stack.spike_ok(&["operator", "rotate", "-f", "json"]));
    assert!(
        rotated["rewrapped"]
            .as_u64()
            .is_some_and(|n| n >= SECRETS as u64),
        "{rotated}"
    );
    read_all(&stack);
    tests::wait_for(
        "the first rotation to finish",
        Duration::from_secs(30),
        || {
            let done = stack.nexus_log().contains("root key rotation finished");
            async move { done.then_some(()) }
        },
    )
    .await;

    // Keepers 2 and 3 frozen: the rotation commits, only keeper 1 gets its new shard, and
    // Nexus dies before the others do.
    signal(&stack, 1, Signal::SIGSTOP);
    signal(&stack, 2, Signal::SIGSTOP);
    stack.spike_ok(&["operator", "rotate"]);
    stack.kill_nexus();
    signal(&stack, 1, Signal::SIGCONT);
    signal(&stack, 2, Signal::SIGCONT);

    // Keepers 2 and 3 rebuild the previous key; the rotation record yields the new one.
    stack.start_nexus().await;
    stack.wait_ready().await;
    assert!(
        stack
            .nexus_log()
            .contains("recovered the rotated key from the rotation record"),
        "{}",
        stack.nexus_log()
    );
    read_all(&stack);
    tests::wait_for(
        "the interrupted rotation to finish",
        Duration::from_secs(30),
        || {
            let done = stack.nexus_log().contains("root key rotation finished");
            async move { done.then_some(()) }
        },
    )
    .await;

    // Finished: every keeper holds the new key, so a plain restart unseals from them.
    stack.restart_nexus().await;
    assert!(!stack.nexus_log().contains("rotation record"));
    read_all(&stack);
    stack.spike_ok(&["secret", "put", "r/after", "v=written-after"]);
}
