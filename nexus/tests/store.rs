//! Store tests. Every `check_*` function runs against BOTH backends: the macros below
//! generate a `sqlite_*` test (fresh file in a temp dir) and a `postgres_*` test (fresh
//! database on the server from `SPIKE_TEST_POSTGRES_URL`, see `common_sql::testing`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nexus::store::{
    InitError, Initialization, KeyRecord, MetadataUpdate, PutVersion, RotateError, RotationRecord,
    SealOutcome, SealedRecord, Store, StoreError, StoredSeal, StoredVersion, WrappedRow,
};
use nexus_crypto::CryptoError;
use time::{Duration, OffsetDateTime};

common_sql::backend_tests! {
    Store::connect;
    check_initialize_once => sqlite_initialize_once, postgres_initialize_once;
    check_put_and_get_versions => sqlite_put_and_get_versions, postgres_put_and_get_versions;
    check_check_and_set => sqlite_check_and_set, postgres_check_and_set;
    check_concurrent_puts_lose_nothing => sqlite_concurrent_puts_lose_nothing, postgres_concurrent_puts_lose_nothing;
    check_concurrent_cas_has_one_winner => sqlite_concurrent_cas_has_one_winner, postgres_concurrent_cas_has_one_winner;
    check_concurrent_failures_stay_alone => sqlite_concurrent_failures_stay_alone, postgres_concurrent_failures_stay_alone;
    check_pruning => sqlite_pruning, postgres_pruning;
    check_delete_and_undelete => sqlite_delete_and_undelete, postgres_delete_and_undelete;
    check_destroy => sqlite_destroy, postgres_destroy;
    check_seal_error_rolls_back => sqlite_seal_error_rolls_back, postgres_seal_error_rolls_back;
    check_metadata => sqlite_metadata, postgres_metadata;
    check_list_and_count => sqlite_list_and_count, postgres_list_and_count;
    check_policies => sqlite_policies, postgres_policies;
    check_policy_generation => sqlite_policy_generation, postgres_policy_generation;
    check_failed_initialization_stores_nothing => sqlite_failed_initialization_stores_nothing, postgres_failed_initialization_stores_nothing;
    check_rotation_rewraps_all_or_nothing => sqlite_rotation_rewraps_all_or_nothing, postgres_rotation_rewraps_all_or_nothing;
    check_sealed_writes_are_fenced_by_the_stored_key => sqlite_sealed_writes_are_fenced_by_the_stored_key, postgres_sealed_writes_are_fenced_by_the_stored_key;
    check_operator_seal_is_stored_and_fences_every_write => sqlite_operator_seal_is_stored_and_fences_every_write, postgres_operator_seal_is_stored_and_fences_every_write;
    check_metadata_update => sqlite_metadata_update, postgres_metadata_update;
    check_cas_required => sqlite_cas_required, postgres_cas_required;
    check_expired_versions => sqlite_expired_versions, postgres_expired_versions;
    check_prune_expired => sqlite_prune_expired, postgres_prune_expired;
    check_patch => sqlite_patch, postgres_patch;
    check_reads_follow_every_write => sqlite_reads_follow_every_write, postgres_reads_follow_every_write;
    check_list_pages => sqlite_list_pages, postgres_list_pages;
}

common_sql::backend_url_tests! {
    check_concurrent_initialize => sqlite_concurrent_initialize, postgres_concurrent_initialize;
    check_concurrent_initialize_runs_one_creation => sqlite_concurrent_initialize_runs_one_creation, postgres_concurrent_initialize_runs_one_creation;
}

/// A fixed time `ms` milliseconds after a base (times are stored at millisecond precision).
fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time")
        + Duration::milliseconds(ms)
}

fn put(path: &str) -> PutVersion<'_> {
    PutVersion {
        path,
        cas: None,
        max_versions: 10,
        cas_required: false,
        created_by: "spiffe://example.org/writer",
        now: at(0),
        fence: None,
    }
}

/// What the test "seals" for version `version` of `path`: bytes that name both, so a read
/// shows which version it got and that the seal function saw the right number.
fn record(path: &str, version: u64) -> SealedRecord {
    SealedRecord {
        wrapped_key: format!("key {path}").into_bytes(),
        ciphertext: format!("{path}#{version}").into_bytes(),
    }
}

/// Puts a version sealed with [`record`].
async fn put_with(store: &Store, put: PutVersion<'_>) -> Result<u64, StoreError> {
    let path = put.path.to_owned();
    store.put_version(put, move |v| Ok(record(&path, v))).await
}

async fn put_ok(store: &Store, path: &str) -> u64 {
    put_with(store, put(path))
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"))
}

async fn stored_versions(store: &Store, path: &str) -> Vec<u64> {
    let meta = store.metadata(path).await.expect("metadata");
    meta.versions.iter().map(|v| v.version).collect()
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(got)) => assert_eq!(got.to_string(), what),
        other => panic!("expected NotFound({what:?}), got {other:?}"),
    }
}

fn key_record(tag: u8) -> KeyRecord {
    KeyRecord {
        key_check: vec![tag; 40],
        threshold: 2,
        shares: 3,
        created_at: at(i64::from(tag)),
    }
}

async fn check_initialize_once(store: &Store) {
    assert_eq!(store.key_record().await.expect("read"), None);
    let first = key_record(1);
    assert!(store.initialize(&first).await.expect("initialize"));
    assert_eq!(store.key_record().await.expect("read"), Some(first.clone()));

    let second = KeyRecord {
        threshold: 3,
        shares: 5,
        ..key_record(2)
    };
    assert!(
        !store.initialize(&second).await.expect("second initialize"),
        "a second initialize must not store anything"
    );
    assert_eq!(
        store.key_record().await.expect("read"),
        Some(first),
        "the first record is never overwritten"
    );
}

async fn check_concurrent_initialize(url: &str) {
    // Two stores on one database, like two Nexus replicas starting together.
    let a = Store::connect(url).await.expect("open a");
    let b = Store::connect(url).await.expect("open b");
    let ta = tokio::spawn(async move { a.initialize(&key_record(1)).await.map(|won| (won, a)) });
    let tb = tokio::spawn(async move { b.initialize(&key_record(2)).await.map(|won| (won, b)) });
    let (ra, a) = ta.await.expect("task a").expect("initialize a");
    let (rb, b) = tb.await.expect("task b").expect("initialize b");
    assert!(ra ^ rb, "exactly one initialize wins (a: {ra}, b: {rb})");
    let winner = if ra { key_record(1) } else { key_record(2) };
    assert_eq!(b.key_record().await.expect("read"), Some(winner.clone()));
    a.close().await;
    b.close().await;

    // The record survives reopening.
    let c = Store::connect(url).await.expect("reopen");
    assert_eq!(c.key_record().await.expect("read"), Some(winner));
    c.close().await;
}

/// Two replicas initialising one empty database at once: exactly one runs its creation (which
/// stands for "generate a key and hand its shards to the keepers"), the other waits for it and
/// then sees its record.
async fn check_concurrent_initialize_runs_one_creation(url: &str) {
    let runs = Arc::new(AtomicUsize::new(0));
    // Opened one after the other: SQLite's migrator takes no lock (PostgreSQL's does).
    let (a, b) = (
        Store::connect(url).await.expect("open a"),
        Store::connect(url).await.expect("open b"),
    );
    let replica = |store: Store, tag: u8| {
        let runs = runs.clone();
        tokio::spawn(async move {
            let create = move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                // Long enough that the other replica certainly arrives meanwhile.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok::<_, String>((key_record(tag), tag))
            };
            let outcome = store.initialize_exclusively(create).await;
            store.close().await;
            outcome.expect("initialize")
        })
    };
    let (a, b) = (replica(a, 1), replica(b, 2));
    let outcomes = [a.await.expect("task a"), b.await.expect("task b")];
    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly one creation ran");
    let created: Vec<u8> = outcomes
        .iter()
        .filter_map(|o| match o {
            Initialization::Created(tag) => Some(*tag),
            Initialization::Existing(_) => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{outcomes:?}");
    let winner = key_record(created[0]);
    for outcome in &outcomes {
        if let Initialization::Existing(record) = outcome {
            assert_eq!(*record, winner, "the loser sees the winner's record");
        }
    }
    let store = Store::connect(url).await.expect("reopen");
    assert_eq!(store.key_record().await.expect("read"), Some(winner));
    store.close().await;
}

/// A creation that fails (a keeper did not take its shard) stores nothing and leaves the
/// lock free for the next attempt.
async fn check_failed_initialization_stores_nothing(store: &Store) {
    let failed = store
        .initialize_exclusively(|| async { Err::<(KeyRecord, ()), _>("keeper 2 unreachable") })
        .await;
    assert!(
        matches!(failed, Err(InitError::Create("keeper 2 unreachable"))),
        "{failed:?}"
    );
    assert_eq!(store.key_record().await.expect("read"), None);
    let again = store
        .initialize_exclusively(|| async { Ok::<_, String>((key_record(3), "created")) })
        .await
        .expect("second attempt");
    assert!(
        matches!(again, Initialization::Created("created")),
        "{again:?}"
    );
    let after = store
        .initialize_exclusively(|| async { Ok::<_, String>((key_record(4), "again")) })
        .await
        .expect("third attempt");
    assert!(
        matches!(&after, Initialization::Existing(record) if *record == key_record(3)),
        "{after:?}"
    );
}

async fn check_put_and_get_versions(store: &Store) {
    for expected in 1..=3 {
        assert_eq!(put_ok(store, "db/x").await, expected);
    }
    assert_eq!(
        store.get_version("db/x", 0).await.expect("current"),
        StoredVersion {
            version: 3,
            sealed: record("db/x", 3)
        }
    );
    for version in 1..=3 {
        let got = store
            .get_version("db/x", version)
            .await
            .expect("by version");
        assert_eq!(got.version, version);
        assert_eq!(got.sealed, record("db/x", version));
    }
    assert_not_found(store.get_version("db/x", 4).await, "version 4 of db/x");
    assert_not_found(
        store.get_version("db/x", u64::MAX).await,
        &format!("version {} of db/x", u64::MAX),
    );
    assert_not_found(store.get_version("db/y", 0).await, "secret db/y");
    assert_not_found(store.get_version("db/y", 1).await, "secret db/y");

    // Paths are independent.
    assert_eq!(put_ok(store, "db/y").await, 1);
    assert_eq!(store.get_version("db/x", 0).await.expect("x").version, 3);
}

async fn check_check_and_set(store: &Store) {
    let cas = |n| PutVersion {
        cas: Some(n),
        ..put("db/x")
    };
    assert_eq!(put_with(store, cas(0)).await.expect("CAS 0 creates"), 1);
    match put_with(store, cas(0)).await {
        Err(StoreError::CasMismatch {
            expected: 0,
            current: 1,
        }) => {}
        other => panic!("expected CasMismatch{{0, 1}}, got {other:?}"),
    }
    assert_eq!(put_with(store, cas(1)).await.expect("CAS 1"), 2);
    match put_with(store, cas(5)).await {
        Err(
            err @ StoreError::CasMismatch {
                expected: 5,
                current: 2,
            },
        ) => {
            assert!(err.to_string().contains("latest version is 2"), "{err}");
        }
        other => panic!("expected CasMismatch{{5, 2}}, got {other:?}"),
    }
    // A failed check-and-set wrote nothing and consumed no version number.
    assert_eq!(stored_versions(store, "db/x").await, vec![1, 2]);
    assert_eq!(
        store.metadata("db/x").await.expect("meta").latest_version,
        2
    );
    assert_eq!(put_ok(store, "db/x").await, 3);
}

async fn check_concurrent_puts_lose_nothing(store: &Store) {
    const WRITERS: u64 = 20;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let put = PutVersion {
                    max_versions: 50,
                    cas_required: false,
                    ..put("db/race")
                };
                put_with(&store, put).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for result in futures::future::join_all(tasks).await {
        versions.push(result.expect("task").expect("concurrent put"));
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=WRITERS).collect::<Vec<_>>(),
        "each version exactly once"
    );

    let meta = store.metadata("db/race").await.expect("meta");
    assert_eq!(meta.latest_version, WRITERS);
    assert_eq!(meta.current_version, WRITERS);
    assert_eq!(meta.oldest_version, 1);
    assert_eq!(meta.versions.len(), 20, "no version row lost");
    for version in 1..=WRITERS {
        let got = store.get_version("db/race", version).await.expect("read");
        assert_eq!(
            got.sealed,
            record("db/race", version),
            "sealed with its own number"
        );
    }
}

async fn check_concurrent_cas_has_one_winner(store: &Store) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let put = PutVersion {
                    cas: Some(0),
                    ..put("db/once")
                };
                put_with(&store, put).await
            })
        })
        .collect();
    let mut winners = 0;
    for result in futures::future::join_all(tasks).await {
        match result.expect("task") {
            Ok(version) => {
                assert_eq!(version, 1);
                winners += 1;
            }
            Err(StoreError::CasMismatch {
                expected: 0,
                current: 1,
            }) => {}
            Err(err) => panic!("unexpected error: {err:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one CAS(0) put wins");
    assert_eq!(stored_versions(store, "db/once").await, vec![1]);
}

/// Concurrent puts, a third failing by check-and-set and a third by their seal function:
/// on SQLite they are committed in groups (`group_commit`), and a failure must undo its
/// own put only, whichever group it shared.
async fn check_concurrent_failures_stay_alone(store: &Store) {
    assert_eq!(put_ok(store, "db/g-cas").await, 1);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => put_with(&store, put(&format!("db/g-ok-{i}"))).await,
                    1 => {
                        let path = format!("db/g-seal-{i}");
                        store
                            .put_version(put(&path), |_| Err(CryptoError::Encrypt))
                            .await
                    }
                    _ => {
                        let cas = PutVersion {
                            cas: Some(0),
                            ..put("db/g-cas")
                        };
                        put_with(&store, cas).await
                    }
                }
            })
        })
        .collect();
    for (i, result) in futures::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
    {
        match (i % 3, result.expect("task")) {
            (0, Ok(1)) => {}
            (1, Err(StoreError::Crypto(CryptoError::Encrypt))) => {}
            (
                2,
                Err(StoreError::CasMismatch {
                    expected: 0,
                    current: 1,
                }),
            ) => {}
            (_, other) => panic!("put {i}: unexpected {other:?}"),
        }
    }
    let mut expected: Vec<String> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("db/g-ok-{i}"))
        .chain(["db/g-cas".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(store.list_paths().await.expect("list"), expected);
    assert_eq!(stored_versions(store, "db/g-cas").await, vec![1]);
    let meta = store.metadata("db/g-cas").await.expect("meta");
    assert_eq!(meta.latest_version, 1, "failed puts leave no gap");
    for path in &expected {
        let got = store.get_version(path, 1).await.expect("read");
        assert_eq!(got.sealed, record(path, 1));
    }
}

async fn check_pruning(store: &Store) {
    let keep3 = |now| PutVersion {
        max_versions: 3,
        cas_required: false,
        now,
        ..put("db/p")
    };
    for (i, expected) in (1..=5).enumerate() {
        let now = at(i64::try_from(i).expect("small"));
        assert_eq!(put_with(store, keep3(now)).await.expect("put"), expected);
    }
    let meta = store.metadata("db/p").await.expect("meta");
    assert_eq!(meta.max_versions, 3);
    assert_eq!(
        meta.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![3, 4, 5],
        "pruned versions are gone from storage"
    );
    assert_eq!(
        (
            meta.oldest_version,
            meta.current_version,
            meta.latest_version
        ),
        (3, 5, 5)
    );
    assert_not_found(store.get_version("db/p", 2).await, "version 2 of db/p");

    // max_versions was captured when the secret was created.
    let wider = PutVersion {
        max_versions: 10,
        cas_required: false,
        ..put("db/p")
    };
    assert_eq!(put_with(store, wider).await.expect("put"), 6);
    let meta = store.metadata("db/p").await.expect("meta");
    assert_eq!(meta.max_versions, 3);
    assert_eq!(stored_versions(store, "db/p").await, vec![4, 5, 6]);
    assert_eq!(meta.oldest_version, 4);

    // A deleted oldest version does not count as oldest.
    store
        .delete_versions("db/p", &[4], at(10))
        .await
        .expect("delete");
    assert_eq!(
        store.metadata("db/p").await.expect("meta").oldest_version,
        5
    );
}

async fn check_delete_and_undelete(store: &Store) {
    for _ in 0..3 {
        put_ok(store, "db/d").await;
    }
    // Empty list: the current version.
    store
        .delete_versions("db/d", &[], at(100))
        .await
        .expect("delete current");
    let meta = store.metadata("db/d").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (2, 1));
    assert_eq!(meta.updated_at, at(100));
    assert_eq!(meta.versions[2].deleted_at, Some(at(100)));
    assert_eq!(
        store.get_version("db/d", 0).await.expect("current").version,
        2
    );
    assert_not_found(store.get_version("db/d", 3).await, "version 3 of db/d");

    // Explicit versions; unknown ones are ignored.
    store
        .delete_versions("db/d", &[1, 2, 99], at(200))
        .await
        .expect("delete the rest");
    let meta = store.metadata("db/d").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (0, 0));
    assert_eq!(meta.latest_version, 3);
    assert_not_found(
        store.get_version("db/d", 0).await,
        "current version of db/d",
    );
    assert_eq!(
        store.list_paths().await.expect("list"),
        vec!["db/d"],
        "a secret with every version deleted is still listed"
    );
    assert_not_found(
        store.delete_versions("db/none", &[], at(1)).await,
        "secret db/none",
    );

    // Current is 0 and no version named: the highest deleted version comes back.
    store
        .undelete_versions("db/d", &[], at(300))
        .await
        .expect("undelete");
    let meta = store.metadata("db/d").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (3, 3));
    assert_eq!(meta.updated_at, at(300));
    assert_eq!(meta.versions[2].deleted_at, None);
    assert_eq!(
        store.get_version("db/d", 0).await.expect("current").version,
        3
    );

    // Current (3) is not deleted: nothing to restore.
    assert_not_found(
        store.undelete_versions("db/d", &[0], at(400)).await,
        "deleted current version of db/d",
    );
    assert_not_found(
        store.undelete_versions("db/d", &[7], at(400)).await,
        "deleted version 7 of db/d",
    );
    store
        .undelete_versions("db/d", &[1], at(500))
        .await
        .expect("undelete 1");
    let meta = store.metadata("db/d").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (3, 1));
    assert_eq!(
        meta.versions[1].deleted_at,
        Some(at(200)),
        "2 is still deleted"
    );
    assert_not_found(
        store.undelete_versions("db/none", &[], at(1)).await,
        "secret db/none",
    );

    // A put after deletes continues the numbering.
    assert_eq!(put_ok(store, "db/d").await, 4);
}

async fn check_destroy(store: &Store) {
    for _ in 0..3 {
        put_ok(store, "db/z").await;
    }
    store
        .destroy("db/z", &[2], at(100))
        .await
        .expect("destroy 2");
    assert_eq!(stored_versions(store, "db/z").await, vec![1, 3]);
    assert_not_found(store.get_version("db/z", 2).await, "version 2 of db/z");
    assert_not_found(
        store.destroy("db/z", &[2], at(100)).await,
        "version 2 of db/z",
    );
    assert_not_found(
        store.destroy("db/z", &[2, 8], at(100)).await,
        "versions 2, 8 of db/z",
    );

    // Destroying the current version moves current down; the counter stays.
    store
        .destroy("db/z", &[0], at(200))
        .await
        .expect("destroy current");
    let meta = store.metadata("db/z").await.expect("meta");
    assert_eq!(
        (
            meta.current_version,
            meta.oldest_version,
            meta.latest_version
        ),
        (1, 1, 3)
    );
    assert_eq!(meta.updated_at, at(200));
    assert_eq!(
        put_ok(store, "db/z").await,
        4,
        "version numbers are never reused"
    );

    // Destroying every version keeps the (empty) secret and its counter.
    store
        .destroy("db/z", &[1, 4], at(300))
        .await
        .expect("destroy rest");
    let meta = store.metadata("db/z").await.expect("meta");
    assert!(meta.versions.is_empty());
    assert_eq!(
        (
            meta.current_version,
            meta.oldest_version,
            meta.latest_version
        ),
        (0, 0, 4)
    );
    assert_eq!(put_ok(store, "db/z").await, 5);

    // An empty list removes the secret entirely.
    put_ok(store, "db/keep").await;
    store
        .destroy("db/z", &[], at(400))
        .await
        .expect("destroy all");
    assert_eq!(store.list_paths().await.expect("list"), vec!["db/keep"]);
    assert_not_found(store.metadata("db/z").await, "secret db/z");
    assert_not_found(store.get_version("db/z", 5).await, "secret db/z");
    assert_not_found(store.destroy("db/z", &[], at(500)).await, "secret db/z");
    assert_not_found(store.destroy("db/z", &[1], at(500)).await, "secret db/z");
    assert_eq!(
        put_ok(store, "db/z").await,
        1,
        "a destroyed secret starts again at 1"
    );
    assert_eq!(stored_versions(store, "db/z").await, vec![1]);
}

async fn check_seal_error_rolls_back(store: &Store) {
    let failed = store
        .put_version(put("db/s"), |_| Err(CryptoError::Encrypt))
        .await;
    assert!(
        matches!(failed, Err(StoreError::Crypto(CryptoError::Encrypt))),
        "{failed:?}"
    );
    assert_not_found(store.metadata("db/s").await, "secret db/s");
    assert!(store.list_paths().await.expect("list").is_empty());
    assert_eq!(store.secret_count().await.expect("count"), 0);

    // On an existing secret, the failed put leaves no row and no gap.
    assert_eq!(put_ok(store, "db/s").await, 1);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let told = seen.clone();
    let failed = store
        .put_version(put("db/s"), move |v| {
            *told.lock().expect("not poisoned") = Some(v);
            Err(CryptoError::Encrypt)
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Crypto(_))), "{failed:?}");
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        Some(2),
        "the seal function is given the new version"
    );
    assert_eq!(
        store.metadata("db/s").await.expect("meta").latest_version,
        1
    );
    assert_eq!(put_ok(store, "db/s").await, 2);
}

async fn check_metadata(store: &Store) {
    let first = PutVersion {
        max_versions: 7,
        cas_required: false,
        created_by: "spiffe://example.org/alice",
        now: at(1_000),
        ..put("app/cfg")
    };
    put_with(store, first).await.expect("put 1");
    let second = PutVersion {
        max_versions: 99, // ignored: captured at creation
        cas_required: false,
        created_by: "spiffe://example.org/bob",
        now: at(2_000),
        ..put("app/cfg")
    };
    put_with(store, second).await.expect("put 2");
    store
        .delete_versions("app/cfg", &[1], at(3_000))
        .await
        .expect("delete 1");

    let meta = store.metadata("app/cfg").await.expect("meta");
    assert_eq!(meta.path, "app/cfg");
    assert_eq!(
        (
            meta.current_version,
            meta.oldest_version,
            meta.latest_version
        ),
        (2, 2, 2)
    );
    assert_eq!(meta.max_versions, 7);
    assert_eq!(meta.created_at, at(1_000));
    assert_eq!(meta.updated_at, at(3_000));
    assert_eq!(meta.created_by, "spiffe://example.org/alice");
    assert_eq!(meta.versions.len(), 2);
    let (v1, v2) = (&meta.versions[0], &meta.versions[1]);
    assert_eq!(
        (v1.version, v1.created_at, v1.deleted_at),
        (1, at(1_000), Some(at(3_000)))
    );
    assert_eq!(v1.created_by, "spiffe://example.org/alice");
    assert_eq!(
        (v2.version, v2.created_at, v2.deleted_at),
        (2, at(2_000), None)
    );
    assert_eq!(v2.created_by, "spiffe://example.org/bob");
    assert_not_found(store.metadata("app/none").await, "secret app/none");
}

async fn check_list_and_count(store: &Store) {
    assert!(store.list_paths().await.expect("list").is_empty());
    assert_eq!(store.secret_count().await.expect("count"), 0);
    for path in ["db/b", "app/x", "db/a", "Zeta", "db/a/b"] {
        put_ok(store, path).await;
    }
    put_ok(store, "db/a").await;
    assert_eq!(
        store.list_paths().await.expect("list"),
        vec!["Zeta", "app/x", "db/a", "db/a/b", "db/b"],
        "sorted byte-wise, each path once"
    );
    assert_eq!(store.secret_count().await.expect("count"), 5);
}

async fn check_policies(store: &Store) {
    let body = |tag: &str| SealedRecord {
        wrapped_key: format!("wk {tag}").into_bytes(),
        ciphertext: format!("ct {tag}").into_bytes(),
    };
    assert!(store.list_policies().await.expect("list").is_empty());
    for (name, tag, ms) in [
        ("writers", "w1", 10),
        ("readers", "r1", 20),
        ("writers", "w2", 30),
    ] {
        store
            .put_policy(name, body(tag), at(ms), None)
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
    }

    let writers = store
        .get_policy("writers")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(writers.name, "writers");
    assert_eq!(writers.sealed, body("w2"));
    assert_eq!(writers.created_at, at(10), "replacing keeps created_at");
    assert_eq!(writers.updated_at, at(30));

    let names: Vec<String> = store
        .list_policies()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["readers", "writers"]);

    assert!(
        store
            .delete_policy("writers")
            .await
            .expect("delete")
            .is_some()
    );
    assert_eq!(
        store.delete_policy("writers").await.expect("delete again"),
        None
    );
    assert_eq!(store.get_policy("writers").await.expect("get"), None);
    assert_eq!(store.list_policies().await.expect("list").len(), 1);
}

/// Every policy change, and only a change, moves the generation on by one.
async fn check_policy_generation(store: &Store) {
    let body = SealedRecord {
        wrapped_key: b"wk".to_vec(),
        ciphertext: b"ct".to_vec(),
    };
    assert_eq!(store.policy_generation().await.expect("generation"), 0);
    let put = |name: &'static str| store.put_policy(name, body.clone(), at(1), None);
    assert_eq!(put("a").await.expect("put a"), 1);
    assert_eq!(put("a").await.expect("replace a"), 2);
    assert_eq!(put("b").await.expect("put b"), 3);
    assert_eq!(store.delete_policy("a").await.expect("delete a"), Some(4));
    assert_eq!(
        store.delete_policy("a").await.expect("delete a again"),
        None
    );
    assert_eq!(store.policy_generation().await.expect("generation"), 4);
    let (generation, policies) = store.policies_at_generation().await.expect("snapshot");
    let names: Vec<_> = policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!((generation, names), (4, vec!["b"]));
    store.delete_policy("b").await.expect("delete b");
    let (generation, policies) = store.policies_at_generation().await.expect("snapshot");
    assert_eq!(
        (generation, policies.len()),
        (5, 0),
        "no policy: the generation still"
    );

    // Concurrent changes each get their own generation.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let body = body.clone();
            tokio::spawn(async move { store.put_policy(&format!("p{i}"), body, at(2), None).await })
        })
        .collect();
    let mut generations: Vec<u64> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("put"))
        .collect();
    generations.sort_unstable();
    assert_eq!(generations, (6..=13).collect::<Vec<_>>());
    let (generation, policies) = store.policies_at_generation().await.expect("snapshot");
    assert_eq!((generation, policies.len()), (13, 8));
}

/// PostgreSQL announces each new policy generation on the channel, when the change commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_policy_changes_are_notified() {
    async fn next(listener: &mut sqlx::postgres::PgListener) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .expect("notification")
            .payload()
            .to_owned()
    }

    let db = common_sql::testing::TestDatabase::create().await;
    let store = Store::connect(db.url()).await.expect("open");
    let mut listener = sqlx::postgres::PgListener::connect(db.url())
        .await
        .expect("listener");
    listener
        .listen(nexus::store::POLICY_CHANNEL)
        .await
        .expect("listen");
    let body = SealedRecord {
        wrapped_key: b"wk".to_vec(),
        ciphertext: b"ct".to_vec(),
    };
    store
        .put_policy("a", body.clone(), at(1), None)
        .await
        .expect("put");
    assert_eq!(next(&mut listener).await, "1");
    assert_eq!(store.delete_policy("nope").await.expect("delete"), None);
    store.notify_policy_listeners("ping").await.expect("ping");
    assert_eq!(
        next(&mut listener).await,
        "ping",
        "a delete that changed nothing sent nothing"
    );
    store.delete_policy("a").await.expect("delete");
    assert_eq!(next(&mut listener).await, "2");
    store.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::connect(&common_sql::testing::sqlite_url(dir.path()))
        .await
        .expect("open");
    put_ok(&store, "db/x").await;
    store.close().await;
    let mode = std::fs::metadata(dir.path().join("test.db"))
        .expect("database file exists")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "secrets metadata is readable by its owner only"
    );
}

#[tokio::test]
async fn unsupported_url_is_rejected() {
    let err = Store::connect("mysql://u:secret@h/db")
        .await
        .expect_err("unsupported scheme");
    assert!(
        matches!(&err, StoreError::Sql(common_sql::SqlError::UnsupportedUrl(s)) if s == "mysql"),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("secret"),
        "no password in the message: {err}"
    );
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn closed_store_is_unavailable() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::connect(&common_sql::testing::sqlite_url(dir.path()))
        .await
        .expect("open");
    store.close().await;
    let err = store.list_paths().await.expect_err("pool is closed");
    assert!(err.is_unavailable(), "{err:?}");
}

#[test]
fn sealed_record_debug_shows_lengths_only() {
    let sealed = SealedRecord {
        wrapped_key: b"secret-key".to_vec(),
        ciphertext: b"secret-data".to_vec(),
    };
    assert_eq!(
        format!("{sealed:?}"),
        "SealedRecord { wrapped_key_len: 10, ciphertext_len: 11 }"
    );
}

/// On PostgreSQL a replica waiting for another's initialisation lock gives up after the
/// statement timeout with an "unavailable" error (retry later), rather than hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_initialization_lock_wait_is_bounded() {
    let db = common_sql::testing::TestDatabase::create().await;
    let holder = Store::connect(db.url()).await.expect("open holder");
    let waiter = Store::connect(db.url()).await.expect("open waiter");
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let holding = tokio::spawn(async move {
        let outcome = holder
            .initialize_exclusively(|| async move {
                let _ = locked_tx.send(());
                let _ = done_rx.await;
                Err::<(KeyRecord, ()), _>("the holder gives up")
            })
            .await;
        holder.close().await;
        outcome.map(|_| ())
    });
    locked_rx.await.expect("the holder took the lock");
    let started = std::time::Instant::now();
    let waited = waiter
        .initialize_exclusively(|| async { Ok::<_, String>((key_record(1), ())) })
        .await;
    let elapsed = started.elapsed();
    let _ = done_tx.send(());
    match waited {
        Err(InitError::Store(error)) => assert!(error.is_unavailable(), "{error:?}"),
        other => panic!("expected a timed-out wait, got {other:?}"),
    }
    assert!(
        elapsed >= std::time::Duration::from_secs(4) && elapsed < std::time::Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(matches!(
        holding.await.expect("holder"),
        Err(InitError::Create("the holder gives up"))
    ));
    // The lock is free again.
    assert!(waiter.initialize(&key_record(2)).await.expect("initialize"));
    waiter.close().await;
}

async fn check_rotation_rewraps_all_or_nothing(store: &Store) {
    store.initialize(&key_record(1)).await.expect("initialize");
    for path in ["a", "b"] {
        put_with(store, put(path)).await.expect("put");
    }
    put_with(store, put("a")).await.expect("put a v2");
    let policy = SealedRecord {
        wrapped_key: b"key policy p".to_vec(),
        ciphertext: b"body".to_vec(),
    };
    store
        .put_policy("p", policy, at(1), None)
        .await
        .expect("policy");
    let rotation = RotationRecord {
        previous_key_check: vec![1; 40],
        sealed_key: b"sealed new key".to_vec(),
    };
    let rewrap = |row: &WrappedRow<'_>| -> Result<Vec<u8>, String> {
        Ok([b"new ".as_slice(), row.wrapped_key].concat())
    };

    // A stale key-check value: another rotation won; nothing changes.
    let stale = store
        .rotate_root_key(&[9; 40], &[2; 40], &rotation, at(2), rewrap)
        .await;
    assert!(matches!(stale, Err(RotateError::KeyChanged)), "{stale:?}");
    // A failing re-wrap part-way: nothing changes either.
    let failing = store
        .rotate_root_key(
            &[1; 40],
            &[2; 40],
            &rotation,
            at(2),
            |row: &WrappedRow<'_>| {
                if row.key == "b" {
                    Err("no".to_owned())
                } else {
                    rewrap(row)
                }
            },
        )
        .await;
    assert!(
        matches!(failing, Err(RotateError::Rewrap(_))),
        "{failing:?}"
    );
    assert_eq!(store.key_record().await.expect("read"), Some(key_record(1)));
    assert_eq!(store.rotation().await.expect("read"), None);
    let a1 = store.get_version("a", 1).await.expect("a v1");
    assert_eq!(a1.sealed.wrapped_key, b"key a");

    // The real thing: every data key (3 versions, 1 policy) in one transaction.
    let count = store
        .rotate_root_key(&[1; 40], &[2; 40], &rotation, at(2), rewrap)
        .await
        .expect("rotate");
    assert_eq!(count, 4);
    for (path, version) in [("a", 1), ("a", 2), ("b", 1)] {
        let stored = store.get_version(path, version).await.expect("version");
        assert_eq!(
            stored.sealed.wrapped_key,
            format!("new key {path}").into_bytes()
        );
        assert_eq!(
            stored.sealed.ciphertext,
            format!("{path}#{version}").into_bytes(),
            "ciphertexts untouched"
        );
    }
    let policy = store.get_policy("p").await.expect("read").expect("policy");
    assert_eq!(policy.sealed.wrapped_key, b"new key policy p");
    let record = store.key_record().await.expect("read").expect("record");
    assert_eq!(record.key_check, vec![2; 40]);
    assert_eq!(record.threshold, 2, "the Shamir parameters stay");
    assert_eq!(
        store.rotation().await.expect("read"),
        Some(rotation.clone())
    );
    // Keepers given the previous key do not finish a rotation to a newer one.
    assert!(!store.finish_rotation(&[1; 40]).await.expect("finish"));
    assert_eq!(store.rotation().await.expect("read"), Some(rotation));
    assert!(store.finish_rotation(&[2; 40]).await.expect("finish"));
    assert_eq!(store.rotation().await.expect("read"), None);
}

/// A sealed write names the key-check value of the key it was sealed under; once the stored
/// value is another (a rotation by another replica), the write is refused and stores nothing.
async fn check_sealed_writes_are_fenced_by_the_stored_key(store: &Store) {
    store.initialize(&key_record(1)).await.expect("initialize");
    let current = key_record(1).key_check;
    let retired = vec![9u8; 40];
    let fenced = |fence| PutVersion {
        fence: Some(fence),
        ..put("db/f")
    };
    put_with(store, fenced(&current))
        .await
        .expect("the stored key");
    let refused = put_with(store, fenced(&retired)).await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged)),
        "{refused:?}"
    );
    let policy = || SealedRecord {
        wrapped_key: b"key".to_vec(),
        ciphertext: b"body".to_vec(),
    };
    let refused = store.put_policy("p", policy(), at(1), Some(&retired)).await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged)),
        "{refused:?}"
    );
    let refused = store
        .create_cipher_key(b"wrapped", at(1), Some(&retired))
        .await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged)),
        "{refused:?}"
    );

    // The fence is read by the put's first statement, which creates a new secret's row:
    // a refused put to a new path leaves no secret behind.
    let refused = put_with(
        store,
        PutVersion {
            fence: Some(&retired),
            ..put("db/f-new")
        },
    )
    .await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged)),
        "{refused:?}"
    );
    assert!(
        !store
            .list_paths()
            .await
            .expect("list")
            .contains(&"db/f-new".to_owned()),
        "a refused put creates no secret"
    );
    // A patch is fenced as well, whether or not its secret exists.
    for path in ["db/f", "db/f-missing"] {
        let refused = store
            .patch_version(
                PutVersion {
                    fence: Some(&retired),
                    ..put(path)
                },
                |_, _| {
                    Ok(SealedRecord {
                        wrapped_key: b"key".to_vec(),
                        ciphertext: b"body".to_vec(),
                    })
                },
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::KeyChanged)),
            "{path}: {refused:?}"
        );
    }
    assert_eq!(
        store.metadata("db/f").await.expect("meta").latest_version,
        1
    );

    assert_eq!(stored_versions(store, "db/f").await, vec![1]);
    assert!(store.get_policy("p").await.expect("read").is_none());
    assert_eq!(store.cipher_key().await.expect("read"), None);
    store
        .put_policy("p", policy(), at(1), Some(&current))
        .await
        .expect("the stored key");
}

/// An operator's seal: refused before a key record exists, stored once (a second seal
/// reports the first), refusing every fenced write while it holds, lifted once.
async fn check_operator_seal_is_stored_and_fences_every_write(store: &Store) {
    const BY: &str = "spiffe://example.org/spike/pilot/role/superuser";
    assert_eq!(
        store.seal(BY, at(5)).await.expect("seal"),
        SealOutcome::NeverInitialized
    );
    assert_eq!(store.operator_seal().await.expect("read"), None);
    store.initialize(&key_record(1)).await.expect("initialize");
    let current = key_record(1).key_check;
    let fenced = PutVersion {
        fence: Some(&current),
        ..put("db/s")
    };
    put_with(store, fenced).await.expect("not sealed yet");

    assert_eq!(
        store.seal(BY, at(5)).await.expect("seal"),
        SealOutcome::Sealed
    );
    let sealed = StoredSeal {
        by: BY.to_owned(),
        at: at(5),
    };
    assert_eq!(
        store.operator_seal().await.expect("read"),
        Some(sealed.clone())
    );
    assert_eq!(
        store
            .seal("spiffe://example.org/other", at(9))
            .await
            .expect("seal"),
        SealOutcome::AlreadySealed(sealed.clone()),
        "the first seal stands"
    );
    let refused = put_with(store, fenced).await;
    assert!(matches!(refused, Err(StoreError::Sealed)), "{refused:?}");
    let policy = SealedRecord {
        wrapped_key: b"key".to_vec(),
        ciphertext: b"body".to_vec(),
    };
    let refused = store
        .put_policy("p", policy.clone(), at(6), Some(&current))
        .await;
    assert!(matches!(refused, Err(StoreError::Sealed)), "{refused:?}");
    let refused = store
        .create_cipher_key(b"wrapped", at(6), Some(&current))
        .await;
    assert!(matches!(refused, Err(StoreError::Sealed)), "{refused:?}");
    assert_eq!(stored_versions(store, "db/s").await, vec![1]);
    assert_eq!(
        store.key_record().await.expect("read"),
        Some(key_record(1)),
        "the key record is untouched"
    );

    assert_eq!(store.unseal().await.expect("unseal"), Some(sealed));
    assert_eq!(
        store.unseal().await.expect("unseal"),
        None,
        "nothing left to lift"
    );
    assert_eq!(store.operator_seal().await.expect("read"), None);
    put_with(store, fenced).await.expect("unsealed");
    store
        .put_policy("p", policy, at(7), Some(&current))
        .await
        .expect("unsealed");
}

/// PostgreSQL announces each change of the operator's seal on the policy channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_operator_seal_changes_are_notified() {
    let db = common_sql::testing::TestDatabase::create().await;
    let store = Store::connect(db.url()).await.expect("open");
    store.initialize(&key_record(1)).await.expect("initialize");
    let mut listener = sqlx::postgres::PgListener::connect(db.url())
        .await
        .expect("listener");
    listener
        .listen(nexus::store::POLICY_CHANNEL)
        .await
        .expect("listen");
    async fn next(listener: &mut sqlx::postgres::PgListener) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification within 5 s")
            .expect("notification")
            .payload()
            .to_owned()
    }
    store.seal("spiffe://td/op", at(1)).await.expect("seal");
    assert_eq!(next(&mut listener).await, nexus::store::SEAL_NOTICE);
    store.unseal().await.expect("unseal");
    assert_eq!(next(&mut listener).await, nexus::store::SEAL_NOTICE);
    store.close().await;
}

fn update(path: &str) -> MetadataUpdate<'_> {
    MetadataUpdate {
        path,
        max_versions: None,
        cas_required: None,
        delete_version_after: None,
        custom_metadata: None,
        default_max_versions: 10,
        created_by: "spiffe://example.org/admin",
        now: at(10_000),
        fence: None,
    }
}

async fn check_metadata_update(store: &Store) {
    for _ in 0..5 {
        put_ok(store, "kv/m").await;
    }
    let labels = BTreeMap::from([("owner".to_owned(), "team-a".to_owned())]);
    store
        .put_metadata(MetadataUpdate {
            max_versions: Some(2),
            cas_required: Some(true),
            delete_version_after: Some(std::time::Duration::from_secs(3600)),
            custom_metadata: Some(&labels),
            ..update("kv/m")
        })
        .await
        .expect("update");
    let meta = store.metadata("kv/m").await.expect("meta");
    assert_eq!(meta.max_versions, 2);
    assert!(meta.cas_required);
    assert_eq!(
        meta.delete_version_after,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(meta.custom_metadata, labels);
    assert_eq!(meta.updated_at, at(10_000));
    assert_eq!(
        stored_versions(store, "kv/m").await,
        [4, 5],
        "a lowered max_versions prunes at once"
    );
    assert_eq!((meta.current_version, meta.oldest_version), (5, 4));

    // Fields not given are kept.
    store
        .put_metadata(MetadataUpdate {
            cas_required: Some(false),
            ..update("kv/m")
        })
        .await
        .expect("update");
    let meta = store.metadata("kv/m").await.expect("meta");
    assert!(!meta.cas_required);
    assert_eq!((meta.max_versions, meta.custom_metadata), (2, labels));

    // A metadata update of a new path makes a secret without versions; a put then starts
    // at version 1 under its settings.
    store
        .put_metadata(MetadataUpdate {
            max_versions: Some(3),
            ..update("kv/new")
        })
        .await
        .expect("create");
    let meta = store.metadata("kv/new").await.expect("meta");
    assert_eq!((meta.latest_version, meta.max_versions), (0, 3));
    assert!(meta.versions.is_empty() && meta.custom_metadata.is_empty());
    assert_eq!(meta.created_by, "spiffe://example.org/admin");
    assert_eq!(put_ok(store, "kv/new").await, 1);

    // The fence guards metadata writes as it guards versions.
    store.initialize(&key_record(1)).await.expect("init");
    let refused = store
        .put_metadata(MetadataUpdate {
            max_versions: Some(1),
            fence: Some(&[9; 40]),
            ..update("kv/m")
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::KeyChanged)),
        "{refused:?}"
    );
    assert_eq!(store.metadata("kv/m").await.expect("meta").max_versions, 2);
}

async fn check_cas_required(store: &Store) {
    put_ok(store, "kv/c").await;
    let global = PutVersion {
        cas_required: true,
        ..put("kv/c")
    };
    assert!(matches!(
        put_with(store, global).await,
        Err(StoreError::CasRequired(path)) if path == "kv/c"
    ));
    assert!(matches!(
        put_with(
            store,
            PutVersion {
                cas_required: true,
                ..put("kv/fresh")
            }
        )
        .await,
        Err(StoreError::CasRequired(_))
    ));
    assert_not_found(store.metadata("kv/fresh").await, "secret kv/fresh");
    store
        .put_metadata(MetadataUpdate {
            cas_required: Some(true),
            ..update("kv/c")
        })
        .await
        .expect("update");
    assert!(matches!(
        put_with(store, put("kv/c")).await,
        Err(StoreError::CasRequired(_))
    ));
    assert_eq!(stored_versions(store, "kv/c").await, [1], "nothing written");
    let with_cas = PutVersion {
        cas: Some(1),
        ..put("kv/c")
    };
    assert_eq!(put_with(store, with_cas).await.expect("cas given"), 2);
}

/// Sets `path`'s `delete_version_after` at `now` (ms).
async fn expire_after(store: &Store, path: &str, after: std::time::Duration, now: i64) {
    store
        .put_metadata(MetadataUpdate {
            delete_version_after: Some(after),
            now: at(now),
            ..update(path)
        })
        .await
        .expect("update");
}

async fn check_expired_versions(store: &Store) {
    let at_time = |path, now| PutVersion { now, ..put(path) };
    let secs = std::time::Duration::from_secs;
    // Version 1 is written without delete_version_after: it never expires, whatever the
    // setting becomes later (a version's deletion time is fixed when it is written).
    put_with(store, at_time("kv/e", at(0))).await.expect("v1");
    expire_after(store, "kv/e", secs(10), 1_000).await;
    put_with(store, at_time("kv/e", at(5_000)))
        .await
        .expect("v2");
    put_with(store, at_time("kv/e", at(8_000)))
        .await
        .expect("v3");
    let meta = store.metadata("kv/e").await.expect("meta");
    let deadlines: Vec<_> = meta.versions.iter().map(|v| v.expires_at).collect();
    assert_eq!(deadlines, [None, Some(at(15_000)), Some(at(18_000))]);

    // At 16s version 2 has expired, version 3 not yet; version 1 never will.
    assert_not_found(
        store.get_live_version("kv/e", 2, at(16_000)).await,
        "version 2 of kv/e",
    );
    let live = |version, now| store.get_live_version("kv/e", version, at(now));
    assert_eq!(live(0, 16_000).await.expect("current").version, 3);
    assert_eq!(
        live(1, 1_000_000).await.expect("v1 never expires").version,
        1
    );

    // Changing the setting moves no existing deadline: lowered to 1s, version 3 still
    // expires at 18s, not at once; raised to an hour, the new version 4 (written under 1s)
    // still expires at 18s.
    expire_after(store, "kv/e", secs(1), 17_000).await;
    assert_eq!(
        live(3, 17_500).await.expect("v3 kept its deadline").version,
        3
    );
    put_with(store, at_time("kv/e", at(17_000)))
        .await
        .expect("v4");
    expire_after(store, "kv/e", secs(3600), 17_100).await;
    assert_eq!(live(0, 17_900).await.expect("v4 readable").version, 4);
    assert_not_found(live(0, 18_000).await, "current version of kv/e");
    assert_not_found(live(3, 18_000).await, "version 3 of kv/e");
    assert_eq!(
        stored_versions(store, "kv/e").await,
        [1, 3, 4],
        "unreadable, not pruned yet (version 2 left with the metadata update at 17s)"
    );

    // The next write prunes the expired ones, and its version expires under the setting
    // in force (an hour).
    put_with(store, at_time("kv/e", at(20_000)))
        .await
        .expect("v5");
    assert_eq!(stored_versions(store, "kv/e").await, [1, 5]);
    let meta = store.metadata("kv/e").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (5, 1));
    assert_eq!(meta.versions[1].expires_at, Some(at(20_000 + 3_600_000)));
}

async fn check_prune_expired(store: &Store) {
    let at_time = |path, now| PutVersion { now, ..put(path) };
    let secs = std::time::Duration::from_secs;
    // kv/a: versions 1 (expires 10s), 2 (15s), 3 (25s); kv/b never expires; kv/c's one
    // version expires at 12s exactly.
    expire_after(store, "kv/a", secs(10), 0).await;
    for now in [0, 5_000] {
        put_with(store, at_time("kv/a", at(now))).await.expect("a");
    }
    expire_after(store, "kv/a", secs(16), 6_000).await;
    put_with(store, at_time("kv/a", at(9_000)))
        .await
        .expect("a");
    put_with(store, at_time("kv/b", at(0))).await.expect("b");
    expire_after(store, "kv/c", secs(2), 0).await;
    put_with(store, at_time("kv/c", at(10_000)))
        .await
        .expect("c");
    let updated = store.metadata("kv/a").await.expect("meta").updated_at;

    // Nothing has expired at 9.999s.
    assert!(
        store
            .prune_expired(at(9_999), 100)
            .await
            .expect("prune")
            .is_empty()
    );

    // At 12s: version 1 of kv/a and kv/c's only version; nothing not yet expired.
    let pruned = store.prune_expired(at(12_000), 100).await.expect("prune");
    let by_path: Vec<(&str, &[u64])> = pruned
        .iter()
        .map(|p| (p.path.as_str(), p.versions.as_slice()))
        .collect();
    assert_eq!(by_path, [("kv/a", &[1][..]), ("kv/c", &[1][..])]);
    assert_eq!(stored_versions(store, "kv/a").await, [2, 3]);
    assert_eq!(stored_versions(store, "kv/b").await, [1]);
    assert!(stored_versions(store, "kv/c").await.is_empty());
    let meta = store.metadata("kv/a").await.expect("meta");
    assert_eq!((meta.current_version, meta.oldest_version), (3, 2));
    assert_eq!(
        meta.updated_at, updated,
        "a prune is no change of the caller's"
    );
    let c = store
        .metadata("kv/c")
        .await
        .expect("kv/c stays, without versions");
    assert_eq!((c.current_version, c.latest_version), (0, 1));

    // Again at the same time: nothing left to prune (idempotent).
    assert!(
        store
            .prune_expired(at(12_000), 100)
            .await
            .expect("again")
            .is_empty()
    );

    // Batches are bounded: 6 expired versions of kv/d, at most 4 per call.
    expire_after(store, "kv/d", secs(1), 0).await;
    for _ in 0..6 {
        put_with(store, at_time("kv/d", at(0))).await.expect("d");
    }
    let first = store.prune_expired(at(20_000), 4).await.expect("first");
    let count = |pruned: &[nexus::store::PrunedVersions]| {
        pruned.iter().map(|p| p.versions.len()).sum::<usize>()
    };
    assert_eq!(count(&first), 4, "{first:?}");
    assert_eq!(
        stored_versions(store, "kv/d").await,
        [5, 6],
        "oldest deadlines first, lowest versions first"
    );

    // Two prunes at once (two replicas): each expired version removed exactly once.
    let (x, y) = tokio::join!(
        store.prune_expired(at(20_000), 100),
        store.prune_expired(at(20_000), 100)
    );
    let (x, y) = (x.expect("x"), y.expect("y"));
    assert_eq!(count(&x) + count(&y), 3, "{x:?} {y:?}");
    assert!(stored_versions(store, "kv/d").await.is_empty());
    assert_eq!(
        stored_versions(store, "kv/a").await,
        [3],
        "expires at 25s: kept"
    );
    assert_eq!(stored_versions(store, "kv/b").await, [1]);
}

async fn check_patch(store: &Store) {
    let merge = |tag: &'static str| {
        move |base: &StoredVersion, version: u64| -> Result<SealedRecord, CryptoError> {
            let mut sealed = record("kv/p", version);
            sealed.wrapped_key =
                format!("{}+{tag}", String::from_utf8_lossy(&base.sealed.ciphertext)).into_bytes();
            Ok(sealed)
        }
    };
    assert_not_found(
        store.patch_version(put("kv/p"), merge("a")).await,
        "secret kv/p",
    );
    put_ok(store, "kv/p").await;
    assert_eq!(
        store
            .patch_version(put("kv/p"), merge("a"))
            .await
            .expect("patch"),
        2
    );
    let v2 = store.get_version("kv/p", 2).await.expect("v2");
    assert_eq!(v2.sealed.wrapped_key, b"kv/p#1+a", "merged from version 1");
    assert_eq!(v2.sealed.ciphertext, b"kv/p#2");

    // Check-and-set against the latest version, and cas_required, as for puts.
    let cas = |n| PutVersion {
        cas: Some(n),
        ..put("kv/p")
    };
    assert!(matches!(
        store.patch_version(cas(1), merge("b")).await,
        Err(StoreError::CasMismatch {
            expected: 1,
            current: 2
        })
    ));
    let required = PutVersion {
        cas_required: true,
        ..put("kv/p")
    };
    assert!(matches!(
        store.patch_version(required, merge("b")).await,
        Err(StoreError::CasRequired(_))
    ));
    assert_eq!(
        store.patch_version(cas(2), merge("b")).await.expect("cas"),
        3
    );

    // A failing merge writes nothing, and the number is not used up.
    let failed = store
        .patch_version(put("kv/p"), |_, _| Err(CryptoError::Encrypt))
        .await;
    assert!(matches!(failed, Err(StoreError::Crypto(_))), "{failed:?}");
    assert_eq!(stored_versions(store, "kv/p").await, [1, 2, 3]);
    assert_eq!(
        store.metadata("kv/p").await.expect("meta").latest_version,
        3
    );

    // Nothing to merge into: every version deleted.
    store
        .delete_versions("kv/p", &[1, 2, 3], at(1))
        .await
        .expect("delete");
    assert_not_found(
        store.patch_version(put("kv/p"), merge("c")).await,
        "current version of kv/p",
    );
}

async fn check_list_pages(store: &Store) {
    for path in ["db/b", "app/x", "db/a", "db/a/b", "dbx", "d"] {
        put_ok(store, path).await;
    }
    let page = |prefix: &'static str, after: &'static str, limit| async move {
        store
            .list_paths_page(prefix, after, limit)
            .await
            .expect("page")
    };
    assert_eq!(page("db/", "", 10).await, ["db/a", "db/a/b", "db/b"]);
    assert_eq!(page("db", "", 2).await, ["db/a", "db/a/b"]);
    assert_eq!(page("db", "db/a/b", 2).await, ["db/b", "dbx"]);
    assert_eq!(page("db", "dbx", 2).await, Vec::<String>::new());
    assert_eq!(page("", "d", 2).await, ["db/a", "db/a/b"]);
    assert_eq!(page("nope", "", 5).await, Vec::<String>::new());
    // `_` and `%` are not patterns.
    put_ok(store, "a_b").await;
    put_ok(store, "axb").await;
    assert_eq!(page("a_", "", 5).await, ["a_b"]);
}

/// Every kind of write is seen by the next read of the same path, though that path was just
/// read (on SQLite the store keeps the rows it read: each write must empty that cache).
async fn check_reads_follow_every_write(store: &Store) {
    let path = "kv/cached";
    let current = |store: &Store| {
        let store = store.clone();
        async move { store.get_version(path, 0).await.map(|v| v.version) }
    };
    assert_not_found(current(store).await, "secret kv/cached");
    put_ok(store, path).await;
    assert_eq!(current(store).await.expect("v1"), 1);
    put_ok(store, path).await;
    assert_eq!(current(store).await.expect("v2"), 2, "put");
    let merge = |_: &StoredVersion, version: u64| Ok(record(path, version));
    store.patch_version(put(path), merge).await.expect("patch");
    assert_eq!(current(store).await.expect("v3"), 3, "patch");

    store
        .delete_versions(path, &[], at(1))
        .await
        .expect("delete");
    assert_eq!(current(store).await.expect("v2"), 2, "delete");
    assert_not_found(store.get_version(path, 3).await, "version 3 of kv/cached");
    store
        .undelete_versions(path, &[3], at(2))
        .await
        .expect("undelete");
    assert_eq!(current(store).await.expect("v3"), 3, "undelete");
    assert_eq!(store.get_version(path, 3).await.expect("v3").version, 3);

    assert_eq!(store.get_version(path, 1).await.expect("v1").version, 1);
    store.destroy(path, &[1], at(3)).await.expect("destroy");
    assert_not_found(store.get_version(path, 1).await, "version 1 of kv/cached");
    store
        .put_metadata(MetadataUpdate {
            max_versions: Some(1),
            ..update(path)
        })
        .await
        .expect("max_versions");
    assert_not_found(store.get_version(path, 2).await, "version 2 of kv/cached");
    assert_eq!(current(store).await.expect("v3"), 3, "metadata");

    // Expiry is judged at each read from the stored deletion time; pruning removes the row.
    expire_after(store, path, std::time::Duration::from_secs(1), 10_000).await;
    put_with(
        store,
        PutVersion {
            now: at(10_000),
            ..put(path)
        },
    )
    .await
    .expect("v4");
    let live = |now| store.get_live_version(path, 4, at(now));
    assert_eq!(live(10_500).await.expect("live").version, 4);
    assert_not_found(live(11_000).await, "version 4 of kv/cached");
    assert_eq!(store.get_version(path, 4).await.expect("stored").version, 4);
    store.prune_expired(at(11_000), 100).await.expect("prune");
    assert_not_found(store.get_version(path, 4).await, "version 4 of kv/cached");

    store
        .destroy(path, &[], at(12_000))
        .await
        .expect("destroy all");
    assert_not_found(current(store).await, "secret kv/cached");
}
