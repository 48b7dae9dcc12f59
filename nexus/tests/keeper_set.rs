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
    assert_eq!(
        store
            .claim_rekey(0, "su", at(0), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::NeverInitialized
    );
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
    assert_eq!(
        store
            .claim_rekey(0, "spiffe://td/other", at(69), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::Running {
            by: "spiffe://td/su".into(),
            since: at(10)
        }
    );
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
    assert_eq!(
        store
            .claim_rekey(0, "su", at(20), STALE)
            .await
            .expect("claim"),
        ClaimOutcome::Moved(1),
        "a rekey from a generation already left"
    );

    // A claim left by a Nexus that died is taken over once stale, and its commit then fails.
    let ClaimOutcome::Claimed(dead) = store
        .claim_rekey(1, "a", at(100), STALE)
        .await
        .expect("claim")
    else {
        panic!("claimed");
    };
    let ClaimOutcome::Claimed(next) = store
        .claim_rekey(1, "b", at(161), STALE)
        .await
        .expect("claim")
    else {
        panic!("a stale claim is taken over");
    };
    let two = urls(2);
    let commit = RekeyCommit {
        key_check: &[1; 40],
        urls: &two,
        threshold: 2,
        finish_rotation: false,
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
