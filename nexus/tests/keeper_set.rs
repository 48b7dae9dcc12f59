//! The keeper set in the datastore (`spike operator rekey`), against BOTH backends: a rekey's
//! claim is one at a time, its commit moves exactly one generation and only under its own
//! claim, the key it was staged for and no seal; a failed or refused step stores nothing.

use nexus::store::{ClaimOutcome, KeyRecord, RekeyCommit, RotationRecord, Store, StoredKeeperSet};
use time::{Duration, OffsetDateTime};

common_sql::backend_tests! {
    Store::connect;
    check_rekey_claims_and_commits => sqlite_rekey_claims_and_commits, postgres_rekey_claims_and_commits;
    check_refused_commits_store_nothing => sqlite_refused_commits_store_nothing, postgres_refused_commits_store_nothing;
}

const STALE: std::time::Duration = std::time::Duration::from_secs(60);

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(seconds)
}

async fn initialized(store: &Store) {
    assert_eq!(store.keeper_set().await.expect("read"), None);
    assert!(matches!(
        store
            .claim_rekey(0, "su", at(0), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::NeverInitialized
    ));
    let record = KeyRecord {
        key_check: vec![1; 40],
        threshold: 2,
        shares: 3,
        created_at: at(0),
    };
    assert!(store.initialize(&record).await.expect("initialize"));
}

fn urls(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("https://k{i}:8443")).collect()
}

async fn check_rekey_claims_and_commits(store: &Store) {
    initialized(store).await;
    let configured = StoredKeeperSet {
        generation: 0,
        urls: None,
        threshold: 2,
        shares: 3,
        key_check: vec![1; 40],
    };
    assert_eq!(store.keeper_set().await.expect("read"), Some(configured));

    let ClaimOutcome::Claimed(claim) = store
        .claim_rekey(0, "spiffe://td/su", at(10), STALE)
        .await
        .expect("claim")
    else {
        panic!("the first claim is taken");
    };
    assert_eq!(claim.from, 0);
    // Another rekey, through any replica, is refused while the claim is fresh.
    assert!(matches!(
        store
            .claim_rekey(0, "spiffe://td/other", at(69), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::Running { by, since } if by == "spiffe://td/su" && since == at(10)
    ));
    let four = urls(4);
    let commit = RekeyCommit {
        key_check: &[1; 40],
        urls: &four,
        threshold: 3,
        finish_rotation: false,
    };
    assert!(store.commit_rekey(&claim, &commit).await.expect("commit"));
    assert_eq!(
        store.keeper_set().await.expect("read"),
        Some(StoredKeeperSet {
            generation: 1,
            urls: Some(four.clone()),
            threshold: 3,
            shares: 4,
            key_check: vec![1; 40],
        })
    );
    let record = store.key_record().await.expect("read").expect("record");
    assert_eq!(
        (record.threshold, record.shares),
        (3, 4),
        "the key record follows"
    );
    assert!(
        !store.commit_rekey(&claim, &commit).await.expect("commit"),
        "a claim commits once"
    );
    assert!(
        matches!(
            store
                .claim_rekey(0, "su", at(20), STALE)
                .await
                .expect("claim"),
            ClaimOutcome::Moved(1)
        ),
        "a rekey from a generation already left"
    );

    // A claim left by a Nexus that died is taken over, and a lost claim cannot commit.
    let ClaimOutcome::Claimed(dead) = store
        .claim_rekey(1, "a", at(100), STALE)
        .await
        .expect("claim")
    else {
        panic!("claimed");
    };
    let two = urls(2);
    let commit = RekeyCommit {
        key_check: &[1; 40],
        urls: &two,
        threshold: 2,
        finish_rotation: false,
    };
    match store.backend() {
        common_sql::Backend::Sqlite => {
            // SQLite: once older than the stale time.
            let ClaimOutcome::Claimed(next) = store
                .claim_rekey(1, "b", at(161), STALE)
                .await
                .expect("claim")
            else {
                panic!("a stale claim is taken over");
            };
            assert!(!store.commit_rekey(&dead, &commit).await.expect("commit"));
            store.release_rekey(&dead).await.expect("release");
            assert!(
                matches!(
                    store.claim_rekey(1, "c", at(162), STALE).await.expect("claim"),
                    ClaimOutcome::Running { by, .. } if by == "b"
                ),
                "releasing a lost claim leaves the live one"
            );
            store.release_rekey(&next).await.expect("release");
        }
        common_sql::Backend::Postgres => {
            // PostgreSQL: never while its holder's lease lives, however old the claim...
            assert!(matches!(
                store.claim_rekey(1, "b", at(1_000), STALE).await.expect("claim"),
                ClaimOutcome::Running { by, .. } if by == "a"
            ));
            // ...and as soon as the server has ended the holder's session (its claim
            // dropped, as its process dying drops it), with no time passed in the claim's
            // clock: until then the claim is still the holder's.
            drop(dead);
            let next = tokio::time::timeout(std::time::Duration::from_secs(30), async {
                loop {
                    match store
                        .claim_rekey(1, "b", at(100), STALE)
                        .await
                        .expect("claim")
                    {
                        ClaimOutcome::Claimed(next) => break next,
                        ClaimOutcome::Running { by, .. } if by == "a" => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        other => panic!("a dead holder's claim is taken over: {other:?}"),
                    }
                }
            })
            .await
            .expect("the server ends the dead holder's session, and its claim is taken over");
            store.release_rekey(&next).await.expect("release");
            assert!(
                !store.commit_rekey(&next, &commit).await.expect("commit"),
                "a released claim commits nothing"
            );
        }
    }
    assert!(matches!(
        store
            .claim_rekey(1, "c", at(163), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::Claimed(_)
    ));
    assert!(store.clear_rekey_claim().await.expect("clear"));
    assert!(
        !store.clear_rekey_claim().await.expect("clear"),
        "nothing left"
    );
    assert_eq!(
        store
            .keeper_set()
            .await
            .expect("read")
            .map(|s| s.generation),
        Some(1)
    );
}

async fn check_refused_commits_store_nothing(store: &Store) {
    initialized(store).await;
    let three = urls(3);
    let claim = |store: &Store, t| {
        let store = store.clone();
        async move {
            match store
                .claim_rekey(0, "su", at(t), STALE)
                .await
                .expect("claim")
            {
                ClaimOutcome::Claimed(claim) => claim,
                other => panic!("{other:?}"),
            }
        }
    };
    // Staged for another key (rotated meanwhile): refused.
    let c = claim(store, 0).await;
    let other_key = RekeyCommit {
        key_check: &[2; 40],
        urls: &three,
        threshold: 3,
        finish_rotation: true,
    };
    assert!(!store.commit_rekey(&c, &other_key).await.expect("commit"));
    store.release_rekey(&c).await.expect("release");

    // Sealed by an operator meanwhile: refused.
    let c = claim(store, 1).await;
    store.seal("su", at(1)).await.expect("seal");
    let same_key = RekeyCommit {
        key_check: &[1; 40],
        urls: &three,
        threshold: 3,
        finish_rotation: true,
    };
    assert!(!store.commit_rekey(&c, &same_key).await.expect("commit"));
    store.unseal().await.expect("unseal");
    assert_eq!(
        store
            .keeper_set()
            .await
            .expect("read")
            .map(|s| s.generation),
        Some(0)
    );

    // With a new root key, the commit also ends the rotation: the new keepers hold the new
    // key's shards.
    let record = RotationRecord {
        previous_key_check: vec![9; 40],
        sealed_key: vec![8; 60],
    };
    store
        .rotate_root_key::<_, std::convert::Infallible>(&[1; 40], &[1; 40], &record, at(2), |row| {
            Ok(row.wrapped_key.to_vec())
        })
        .await
        .expect("rotation record");
    assert!(store.rotation().await.expect("read").is_some());
    assert!(store.commit_rekey(&c, &same_key).await.expect("commit"));
    assert!(store.rotation().await.expect("read").is_none());
    assert_eq!(
        store
            .keeper_set()
            .await
            .expect("read")
            .map(|s| s.generation),
        Some(1)
    );
}

/// Two replicas (two stores) on one PostgreSQL database: a rekey claim whose lease
/// connection is cut while its Nexus lives on (a vanished network path) is taken over by the
/// other replica at once, and the first can no longer commit: it fails instead of
/// committing over the takeover, and is told its claim is not live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_claim_whose_lease_was_cut_is_taken_over_and_cannot_commit() {
    use sqlx::Connection;
    let db = common_sql::testing::TestDatabase::create().await;
    let a = Store::connect(db.url()).await.expect("replica a");
    let b = Store::connect(db.url()).await.expect("replica b");
    initialized(&a).await;
    let ClaimOutcome::Claimed(first) = a.claim_rekey(0, "a", at(0), STALE).await.expect("claim")
    else {
        panic!("a claims");
    };
    assert!(a.rekey_claim_live(&first).await);
    assert!(matches!(
        b.claim_rekey(0, "b", at(1), STALE).await.expect("claim"),
        ClaimOutcome::Running { by, .. } if by == "a"
    ));

    let mut admin = sqlx::PgConnection::connect(db.url()).await.expect("admin");
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .expect("cut the lease");
    assert_eq!(cut, [true], "exactly one lease held");
    // The server ends the session (and frees its lock) right after the signal.
    let second = claim_once_freed(&b).await;
    assert!(!a.rekey_claim_live(&first).await);
    let two = urls(2);
    let commit = RekeyCommit {
        key_check: &[1; 40],
        urls: &two,
        threshold: 2,
        finish_rotation: false,
    };
    assert!(
        a.commit_rekey(&first, &commit).await.is_err(),
        "a cut lease commits nothing"
    );
    assert!(b.commit_rekey(&second, &commit).await.expect("commit"));
    assert_eq!(
        a.keeper_set()
            .await
            .expect("read")
            .map(|s| (s.generation, s.threshold)),
        Some((1, 2))
    );
    let _ = admin.close().await;
    a.close().await;
    b.close().await;
}

/// Claims on `store` until the claim is taken (within five seconds).
async fn claim_once_freed(store: &Store) -> nexus::store::RekeyClaim {
    for _ in 0..50 {
        match store
            .claim_rekey(0, "b", at(2), STALE)
            .await
            .expect("claim")
        {
            ClaimOutcome::Claimed(claim) => return claim,
            ClaimOutcome::Running { .. } => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("the cut lease was never freed");
}
