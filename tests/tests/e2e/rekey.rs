//! Rekey end to end (`spike operator rekey`), as real processes over real mTLS: the root key
//! moves to a different set of keepers with another threshold while Nexus serves; bad input
//! is refused with a precise message and changes nothing; a Nexus killed with SIGKILL and
//! restarted unseals from the new keepers alone, the old ones dead; and a Nexus that dies in
//! the middle of a rekey (a test failpoint aborts it just before, or just after, the commit)
//! unseals from the old keepers or the new ones. With two replicas on PostgreSQL: a rekey
//! through one reaches the other, which serves throughout and unseals from the new set after
//! a restart; a replica that dies mid-rekey holds off no other rekey.

use std::time::Duration;

use tests::secrets::{SUPERUSER_ID, SecretsStack, values};
use tests::{metric_value, stderr, stdout};

const PASSWORD: &str = "rekeyed-Pa55word-41f0aa";

/// The keeper set as `/v1/status` reports it: (generation, keepers, threshold).
fn keeper_set(stack: &SecretsStack) -> (u64, u64, u64) {
    keeper_set_at(stack, &stack.nexus_url())
}

/// [`keeper_set`] of the Nexus at `url`.
fn keeper_set_at(stack: &SecretsStack, url: &str) -> (u64, u64, u64) {
    let keepers = &stack.status_at(url)["keepers"];
    (
        keepers["generation"].as_u64().expect("generation"),
        keepers["total"].as_u64().expect("total"),
        keepers["threshold"].as_u64().expect("threshold"),
    )
}

/// `spike operator rekey` to the keepers `urls`, `threshold` of them.
fn rekey(stack: &SecretsStack, urls: &[String], threshold: &str) -> std::process::Output {
    stack.spike(&[
        "operator",
        "rekey",
        "--keepers",
        &urls.join(","),
        "--threshold",
        threshold,
    ])
}

fn assert_refused(out: &std::process::Output, says: &str) {
    assert!(!out.status.success(), "{}", stdout(out));
    assert!(
        stderr(out).contains(says),
        "wanted {says:?} in: {}",
        stderr(out)
    );
}

fn read_back(stack: &SecretsStack) {
    assert_eq!(
        stack.spike_get("db/password", "password"),
        format!("{PASSWORD}\n")
    );
}

#[tokio::test]
async fn a_rekey_moves_the_key_to_new_keepers_and_a_killed_nexus_unseals_from_them() {
    tests::bin_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    let source = stack.identity_as(SUPERUSER_ID).await;
    stack
        .client(&source)
        .put_secret("db/password", values(&[("password", PASSWORD)]), None)
        .await
        .expect("put");
    assert_eq!(keeper_set(&stack), (0, 3, 2));

    let mut new = Vec::new();
    for _ in 0..4 {
        new.push(stack.add_keeper().await);
    }
    let urls: Vec<String> = new.iter().map(|&i| stack.keeper_url(i)).collect();

    // Bad input: refused with what is wrong, and nothing changes.
    assert_refused(
        &rekey(&stack, &urls, "5"),
        "the threshold (5) cannot exceed the number of keepers (4)",
    );
    assert_refused(
        &rekey(&stack, &urls, "1"),
        "the threshold must be at least 2",
    );
    assert_refused(
        &rekey(&stack, &urls, "0"),
        "the threshold must be at least 2",
    );
    let twice = [urls.clone(), vec![urls[0].clone()]].concat();
    assert_refused(
        &rekey(&stack, &twice, "2"),
        &format!("keeper {} is listed twice", urls[0]),
    );
    // Nothing listens on port 1.
    let unreachable = [urls.clone(), vec!["https://127.0.0.1:1".to_owned()]].concat();
    assert_refused(
        &rekey(&stack, &unreachable, "2"),
        "keeper https://127.0.0.1:1 is unreachable",
    );
    assert_eq!(
        keeper_set(&stack),
        (0, 3, 2),
        "the refusals changed nothing"
    );

    // The rekey: 2 of the 4 new keepers.
    let done = stack.spike_ok(&[
        "operator",
        "rekey",
        "--keepers",
        &urls.join(","),
        "--threshold",
        "2",
    ]);
    assert!(
        done.starts_with(
            "Rekeyed: the root key is now split 2 of 4 keepers (keeper set generation 1).\n"
        ),
        "{done}"
    );
    assert!(
        done.contains(
            "Recovery shards saved before no longer work: run `spike operator recover` again"
        ),
        "{done}"
    );
    assert!(!done.contains("did not confirm"), "{done}");
    assert_eq!(keeper_set(&stack), (1, 4, 2));
    read_back(&stack);

    let metrics = stack.metrics().await;
    assert_eq!(metric_value(&metrics, "nexus_rekeys_total"), 1.0);
    assert_eq!(metric_value(&metrics, "nexus_rekey_failures_total"), 5.0);
    assert_eq!(metric_value(&metrics, "nexus_keeper_generation"), 1.0);
    assert_eq!(metric_value(&metrics, "nexus_shamir_threshold"), 2.0);
    assert_eq!(metric_value(&metrics, "nexus_keepers"), 4.0);

    // The audit log: who rekeyed, and the refusals.
    let lines = stack.audit_lines("/v1/operator/rekey");
    let count = |status: u64| {
        lines
            .iter()
            .filter(|l| l["caller"] == SUPERUSER_ID && l["status"] == status)
            .count()
    };
    assert_eq!((count(200), count(400)), (1, 5), "{lines:?}");

    // The old keepers die, Nexus is killed: it unseals from the new keepers, although its
    // config file still names the old ones.
    for i in 0..3 {
        stack.kill_keeper(i);
    }
    stack.restart_nexus().await;
    read_back(&stack);
    assert_eq!(keeper_set(&stack), (1, 4, 2));
    assert!(
        stack
            .nexus_log()
            .contains("using the keeper set of the last rekey, not the configured keepers"),
        "{}",
        stack.nexus_log()
    );

    // Two of the four new keepers are enough, and the keeper loop re-seeds one that
    // restarted empty.
    stack.kill_keeper(new[0]);
    stack.kill_keeper(new[1]);
    stack.restart_nexus().await;
    read_back(&stack);
    stack.start_keeper(new[0]);
    tests::wait_for(
        "the restarted keeper to be re-seeded",
        Duration::from_secs(30),
        || {
            let log = stack.nexus_log();
            async move {
                log.contains("keeper held no shard; re-seeded it")
                    .then_some(())
            }
        },
    )
    .await;
}

/// Rekeys to the keepers `new` (all 3 needed) with Nexus set to abort at `failpoint`;
/// returns once Nexus has died there.
async fn rekey_dying_at(stack: &mut SecretsStack, failpoint: &str, new: &[usize]) {
    stack.kill_nexus();
    stack.nexus_env = vec![("SPIKE_NEXUS_FAILPOINT".into(), failpoint.into())];
    stack.start_nexus().await;
    stack.wait_ready().await;
    stack.nexus_env.clear();
    let urls: Vec<String> = new.iter().map(|&i| stack.keeper_url(i)).collect();
    let out = rekey(stack, &urls, "3");
    assert!(!out.status.success(), "{}", stdout(&out));
    let nexus = stack.nexus.as_mut().expect("nexus");
    let exit = nexus.wait_exit(Duration::from_secs(20)).await;
    assert!(!exit.success(), "Nexus died at the failpoint: {exit}");
    let log = nexus.log();
    assert!(
        log.contains("test failpoint reached") && log.contains(failpoint),
        "{log}"
    );
}

#[tokio::test]
async fn a_nexus_killed_in_the_middle_of_a_rekey_unseals_from_the_old_or_the_new_keepers() {
    tests::bin_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start(dir.path(), 3).await;
    stack.spike_put("db/password", "password", PASSWORD);
    let mut new = Vec::new();
    for _ in 0..3 {
        new.push(stack.add_keeper().await);
    }

    // Dead after every new keeper took its staged shard, before the commit: the datastore
    // still names generation 0, and the old keepers (the new ones dead) unseal Nexus.
    rekey_dying_at(&mut stack, "rekey-staged", &new).await;
    for &i in &new {
        stack.kill_keeper(i);
    }
    stack.restart_nexus().await;
    read_back(&stack);
    assert_eq!(keeper_set(&stack), (0, 3, 2));

    // Dead right after the commit, before any keeper forgot its old shard: the datastore
    // names generation 1, and the new keepers (the old ones dead) unseal Nexus.
    for &i in &new {
        stack.start_keeper(i);
    }
    rekey_dying_at(&mut stack, "rekey-committed", &new).await;
    for i in 0..3 {
        stack.kill_keeper(i);
    }
    stack.restart_nexus().await;
    read_back(&stack);
    assert_eq!(keeper_set(&stack), (1, 3, 3));
    // And the next rekey is not held off by the dead one's claim: back to two of them,
    // with a new root key this time; killed and restarted, Nexus rebuilds the new key from
    // the two (the third keeper is dead).
    let urls: Vec<String> = new[..2].iter().map(|&i| stack.keeper_url(i)).collect();
    let done = stack.spike_ok(&[
        "operator",
        "rekey",
        "--keepers",
        &urls.join(","),
        "--threshold",
        "2",
        "--new-root-key",
    ]);
    assert!(
        done.contains("2 of 2 keepers (keeper set generation 2)")
            && done.contains("The root key was replaced too:"),
        "{done}"
    );
    read_back(&stack);
    stack.kill_keeper(new[2]);
    stack.restart_nexus().await;
    read_back(&stack);
    assert_eq!(keeper_set(&stack), (2, 2, 2));
}

/// `spike operator rekey` through the Nexus at `url`.
fn rekey_at(
    stack: &SecretsStack,
    url: &str,
    keepers: &[usize],
    threshold: &str,
) -> std::process::Output {
    let urls: Vec<String> = keepers.iter().map(|&i| stack.keeper_url(i)).collect();
    stack.spike_at(
        url,
        &[
            "operator",
            "rekey",
            "--keepers",
            &urls.join(","),
            "--threshold",
            threshold,
        ],
    )
}

fn read_back_at(stack: &SecretsStack, url: &str, want: &str) {
    assert_eq!(
        stack.spike_get_at(url, "db/password", "password"),
        format!("{want}\n")
    );
}

/// Kills both replicas and starts them again (the first, then a new second one): returns
/// the second's URL once both are ready.
async fn restart_both(stack: &mut SecretsStack) -> String {
    stack.kill_nexus();
    for mut replica in stack.replicas.drain(..) {
        replica.process.kill();
    }
    let b = stack.start_nexus_and_replicas(1).await.remove(0);
    stack.wait_ready().await;
    stack.wait_ready_at(&b).await;
    b
}

#[tokio::test]
async fn with_two_replicas_a_rekey_reaches_both_and_a_dead_rekey_holds_off_no_other() {
    tests::bin_dir();
    let db = common_sql::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut stack, a, b) = super::replicas::two_replicas(dir.path(), &db).await;
    stack.spike_put_at(&a, "db/password", "password", PASSWORD);
    let mut new = Vec::new();
    for _ in 0..3 {
        new.push(stack.add_keeper().await);
    }

    // Rekeyed through A: 3 of 3 new keepers. B serves throughout, reads and writes, and
    // its keeper loop adopts the new set.
    let done = rekey_at(&stack, &a, &new, "3");
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stdout(&done).contains("3 of 3 keepers (keeper set generation 1)"),
        "{}",
        stdout(&done)
    );
    read_back_at(&stack, &b, PASSWORD);
    stack.spike_ok_at(&b, &["secret", "put", "db/password", "password=through-b"]);
    read_back_at(&stack, &a, "through-b");
    tests::wait_for(
        "B to adopt the new keeper set",
        Duration::from_secs(30),
        || {
            let set = keeper_set_at(&stack, &b);
            async move { (set == (1, 3, 3)).then_some(()) }
        },
    )
    .await;

    // The old keepers die; both replicas restart and unseal from the new set alone.
    for i in 0..3 {
        stack.kill_keeper(i);
    }
    let b = restart_both(&mut stack).await;
    let a = stack.nexus_url();
    for url in [&a, &b] {
        read_back_at(&stack, url, "through-b");
        assert_eq!(keeper_set_at(&stack, url), (1, 3, 3), "{url}");
    }

    // A dies in the middle of its next rekey (after staging, before the commit), leaving
    // its claim in the database: a rekey through B goes ahead at once, not held off by
    // the dead one's claim (its lease died with A).
    let next = [stack.add_keeper().await, stack.add_keeper().await];
    stack.kill_nexus();
    stack.nexus_env = vec![("SPIKE_NEXUS_FAILPOINT".into(), "rekey-staged".into())];
    stack.start_nexus().await;
    stack.wait_ready().await;
    stack.nexus_env.clear();
    let dying = rekey_at(&stack, &a, &next, "2");
    assert!(!dying.status.success(), "{}", stdout(&dying));
    let exit = stack
        .nexus
        .as_mut()
        .expect("nexus")
        .wait_exit(Duration::from_secs(20))
        .await;
    assert!(!exit.success(), "A died at the failpoint: {exit}");
    let done = rekey_at(&stack, &b, &next, "2");
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stdout(&done).contains("2 of 2 keepers (keeper set generation 2)"),
        "{}",
        stdout(&done)
    );
    read_back_at(&stack, &b, "through-b");

    // Generation 1's keepers die; A, started again, unseals from generation 2's.
    for &i in &new {
        stack.kill_keeper(i);
    }
    stack.restart_nexus().await;
    read_back_at(&stack, &a, "through-b");
    assert_eq!(keeper_set_at(&stack, &a), (2, 2, 2));
}
