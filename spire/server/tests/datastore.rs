//! Datastore tests. Every `check_*` function runs against BOTH backends: the macros below
//! generate a `sqlite_*` test (fresh file in a temp dir) and a `postgres_*` test (fresh
//! database on the server from `SPIKE_TEST_POSTGRES_URL`, see `common_sql::testing`).

use common_sql::SqlError;
use identity::clock::Clock;
use spire_server::datastore::{
    AttestedAgent, Bundle, Datastore, DatastoreError, Entry, EntryFilter, JoinToken, JwtKey,
    Relationship, Selector,
};

common_sql::backend_tests! {
    Datastore::connect;
    check_entry_round_trip => sqlite_entry_round_trip, postgres_entry_round_trip;
    check_duplicate_entry_rejected => sqlite_duplicate_entry_rejected, postgres_duplicate_entry_rejected;
    check_concurrent_duplicate_creates => sqlite_concurrent_duplicate_creates, postgres_concurrent_duplicate_creates;
    check_update_entry => sqlite_update_entry, postgres_update_entry;
    check_delete_entry => sqlite_delete_entry, postgres_delete_entry;
    check_list_entries => sqlite_list_entries, postgres_list_entries;
    check_join_token_single_use => sqlite_join_token_single_use, postgres_join_token_single_use;
    check_join_token_concurrent_consumers => sqlite_join_token_concurrent_consumers, postgres_join_token_concurrent_consumers;
    check_prune_join_tokens => sqlite_prune_join_tokens, postgres_prune_join_tokens;
    check_join_token_with_alias => sqlite_join_token_with_alias, postgres_join_token_with_alias;
    check_attested_agents => sqlite_attested_agents, postgres_attested_agents;
    check_bundles => sqlite_bundles, postgres_bundles;
    check_bundle_compare_and_set => sqlite_bundle_compare_and_set, postgres_bundle_compare_and_set;
    check_relationships => sqlite_relationships, postgres_relationships;
    check_relationship_with_bootstrap_bundle => sqlite_relationship_with_bootstrap_bundle, postgres_relationship_with_bootstrap_bundle;
    check_ban_count_and_purge_agents => sqlite_ban_count_and_purge_agents, postgres_ban_count_and_purge_agents;
}

async fn check_relationships(ds: &Datastore) {
    let web = Relationship {
        trust_domain: "web.org".into(),
        bundle_endpoint_url: "https://web.org/bundle".into(),
        bundle_endpoint_profile: "https_web".into(),
        endpoint_spiffe_id: String::new(),
    };
    let spiffe = Relationship {
        trust_domain: "other.org".into(),
        bundle_endpoint_url: "https://other.org:8443".into(),
        bundle_endpoint_profile: "https_spiffe".into(),
        endpoint_spiffe_id: "spiffe://other.org/spire/server".into(),
    };
    assert!(ds.list_relationships().await.expect("list").is_empty());
    ds.create_relationship(&web, None)
        .await
        .expect("create web");
    ds.create_relationship(&spiffe, None)
        .await
        .expect("create spiffe");
    assert!(matches!(
        ds.create_relationship(&web, None).await,
        Err(DatastoreError::AlreadyExists(_))
    ));
    assert_eq!(
        ds.list_relationships().await.expect("list"),
        vec![spiffe.clone(), web.clone()],
        "ordered by trust domain"
    );
    let moved = Relationship {
        bundle_endpoint_url: "https://web.org/v2".into(),
        ..web.clone()
    };
    ds.update_relationship(&moved, None).await.expect("update");
    assert_eq!(
        ds.get_relationship("web.org").await.expect("get"),
        Some(moved)
    );
    let missing = Relationship {
        trust_domain: "nowhere.org".into(),
        ..web.clone()
    };
    assert!(matches!(
        ds.update_relationship(&missing, None).await,
        Err(DatastoreError::NotFound(_))
    ));
    assert!(ds.delete_relationship("web.org").await.expect("delete"));
    assert!(
        !ds.delete_relationship("web.org")
            .await
            .expect("delete again")
    );
    assert_eq!(ds.list_relationships().await.expect("list"), vec![spiffe]);
}

/// A relationship and its bootstrap bundle are written together or not at all.
async fn check_relationship_with_bootstrap_bundle(ds: &Datastore) {
    let rel = Relationship {
        trust_domain: "other.org".into(),
        bundle_endpoint_url: "https://other.org:8443".into(),
        bundle_endpoint_profile: "https_spiffe".into(),
        endpoint_spiffe_id: "spiffe://other.org/spire/server".into(),
    };
    let bundle = |ca: &[u8]| Bundle {
        trust_domain: "other.org".into(),
        x509_authorities: vec![ca.to_vec()],
        ..Bundle::default()
    };
    ds.create_relationship(&rel, Some(&bundle(b"ca-1")))
        .await
        .expect("create");
    let stored = ds
        .get_bundle("other.org")
        .await
        .expect("get")
        .expect("bundle");
    assert_eq!(stored.x509_authorities, vec![b"ca-1".to_vec()]);
    assert_eq!(stored.sequence_number, 1);

    // A refused create or update leaves the stored bundle as it was.
    assert!(matches!(
        ds.create_relationship(&rel, Some(&bundle(b"ca-2"))).await,
        Err(DatastoreError::AlreadyExists(_))
    ));
    let missing = Relationship {
        trust_domain: "nowhere.org".into(),
        ..rel.clone()
    };
    let nowhere = Bundle {
        trust_domain: "nowhere.org".into(),
        ..bundle(b"ca-3")
    };
    assert!(matches!(
        ds.update_relationship(&missing, Some(&nowhere)).await,
        Err(DatastoreError::NotFound(_))
    ));
    assert_eq!(ds.get_bundle("nowhere.org").await.expect("get"), None);
    assert_eq!(
        ds.get_bundle("other.org").await.expect("get"),
        Some(stored.clone())
    );

    ds.update_relationship(&rel, Some(&bundle(b"ca-4")))
        .await
        .expect("update");
    let updated = ds
        .get_bundle("other.org")
        .await
        .expect("get")
        .expect("bundle");
    assert_eq!(updated.x509_authorities, vec![b"ca-4".to_vec()]);
    assert_eq!(updated.sequence_number, 2);
}

async fn check_ban_count_and_purge_agents(ds: &Datastore) {
    let agent = |id: &str, expires_at: i64| AttestedAgent {
        spiffe_id: format!("spiffe://example.org/spire/agent/x/{id}"),
        attestation_type: "x509pop".into(),
        serial_number: format!("{id}1"),
        expires_at,
        can_reattest: true,
        ..AttestedAgent::default()
    };
    let now = Clock::system().unix_seconds();
    for a in [
        agent("fresh", now + 3600),
        agent("old", now - 7200),
        agent("banned", now - 7200),
    ] {
        ds.upsert_attested_agent(&a).await.expect("upsert");
    }
    assert_eq!(ds.count_attested_agents().await.expect("count"), 3);
    let banned = agent("banned", 0).spiffe_id;
    assert!(ds.ban_attested_agent(&banned).await.expect("ban"));
    assert!(
        !ds.ban_attested_agent("spiffe://example.org/spire/agent/x/none")
            .await
            .expect("ban")
    );
    let stored = ds
        .get_attested_agent(&banned)
        .await
        .expect("get")
        .expect("some");
    assert!(stored.banned);
    assert_eq!(
        stored.serial_number, "",
        "a banned agent's SVID is no longer on record"
    );

    // Expired for more than an hour: only `old`; the banned one stays banned.
    let dry = ds
        .purge_expired_agents(now - 3600, true)
        .await
        .expect("dry run");
    assert_eq!(dry.len(), 1);
    assert_eq!(
        ds.count_attested_agents().await.expect("count"),
        3,
        "dry run deletes nothing"
    );
    let purged = ds
        .purge_expired_agents(now - 3600, false)
        .await
        .expect("purge");
    assert_eq!(
        purged
            .iter()
            .map(|a| a.spiffe_id.clone())
            .collect::<Vec<_>>(),
        vec![agent("old", 0).spiffe_id]
    );
    assert_eq!(ds.count_attested_agents().await.expect("count"), 2);
    assert!(ds.get_attested_agent(&banned).await.expect("get").is_some());
}

common_sql::backend_url_tests! {
    check_reopen_keeps_data => sqlite_reopen_keeps_data, postgres_reopen_keeps_data;
}

fn sel(kind: &str, value: &str) -> Selector {
    Selector::new(kind, value)
}

/// An entry with every field set to a non-default value.
fn full_entry(id: &str) -> Entry {
    Entry {
        id: id.to_owned(),
        spiffe_id: format!("spiffe://example.org/workload/{id}"),
        parent_id: "spiffe://example.org/agent/node1".to_owned(),
        selectors: vec![sel("unix", "uid:1000"), sel("unix", "gid:1000")],
        x509_svid_ttl: 3600,
        jwt_svid_ttl: 300,
        dns_names: vec!["a.example.org".to_owned(), "b.example.org".to_owned()],
        federates_with: vec!["spiffe://other.org".to_owned()],
        hint: "frontend".to_owned(),
        admin: true,
        downstream: true,
        revision_number: 0,
        created_at: 0,
        expires_at: 4_102_444_800,
    }
}

fn simple_entry(id: &str, spiffe_id: &str, parent_id: &str, selectors: &[Selector]) -> Entry {
    Entry {
        id: id.to_owned(),
        spiffe_id: spiffe_id.to_owned(),
        parent_id: parent_id.to_owned(),
        selectors: selectors.to_vec(),
        ..Entry::default()
    }
}

fn ids(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

async fn check_entry_round_trip(ds: &Datastore) {
    let when = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let ds = &ds.clone().with_clock(Clock::manual(when));
    let mut input = full_entry("e1");
    input.revision_number = 7; // ignored: a new entry starts at revision 0
    let created = ds.create_entry(&input).await.expect("create entry");
    assert_eq!(created.revision_number, 0);
    assert_eq!(
        created.created_at,
        when.unix_timestamp(),
        "created_at is the clock's now"
    );
    let expected = Entry {
        revision_number: 0,
        created_at: created.created_at,
        ..input.clone()
    };
    assert_eq!(created, expected);

    let fetched = ds.get_entry("e1").await.expect("get entry");
    assert_eq!(fetched, Some(expected), "all fields survive the round trip");

    // An explicit creation time is kept; defaults (false, empty lists, 0) round-trip too.
    let mut minimal = simple_entry(
        "e2",
        "spiffe://example.org/w2",
        "spiffe://example.org/agent/node1",
        &[sel("k8s", "ns:default")],
    );
    minimal.created_at = 1_700_000_000;
    let created = ds
        .create_entry(&minimal)
        .await
        .expect("create minimal entry");
    assert_eq!(created, minimal);
    assert_eq!(ds.get_entry("e2").await.expect("get e2"), Some(minimal));

    assert_eq!(ds.get_entry("missing").await.expect("get missing"), None);
    assert_eq!(ds.count_entries().await.expect("count"), 2);
}

async fn check_duplicate_entry_rejected(ds: &Datastore) {
    let original = ds
        .create_entry(&full_entry("e1"))
        .await
        .expect("create entry");

    // Same SPIFFE ID, parent and selector SET (different order, a repeated selector).
    let mut same_set = full_entry("e2");
    same_set.spiffe_id.clone_from(&original.spiffe_id);
    same_set.selectors = vec![
        sel("unix", "gid:1000"),
        sel("unix", "uid:1000"),
        sel("unix", "gid:1000"),
    ];
    same_set.hint = "other".to_owned();
    let err = ds
        .create_entry(&same_set)
        .await
        .expect_err("duplicate mapping must be rejected");
    assert!(
        matches!(&err, DatastoreError::AlreadyExists(msg) if msg.contains("selectors")),
        "unexpected error: {err}"
    );

    // Same ID, different everything else.
    let mut same_id = full_entry("e1");
    same_id.spiffe_id = "spiffe://example.org/else".to_owned();
    same_id.selectors = vec![sel("unix", "uid:1")];
    let err = ds
        .create_entry(&same_id)
        .await
        .expect_err("duplicate id must be rejected");
    assert!(
        matches!(&err, DatastoreError::AlreadyExists(msg) if msg.contains("\"e1\"")),
        "unexpected error: {err}"
    );

    // Nothing of the rejected entries was written, selectors included.
    assert_eq!(ds.count_entries().await.expect("count"), 1);
    assert_eq!(ds.get_entry("e2").await.expect("get e2"), None);
    assert_eq!(
        ds.get_entry("e1").await.expect("get e1"),
        Some(original.clone())
    );
    let by_rejected_selector = EntryFilter {
        selectors: vec![sel("unix", "uid:1")],
        ..EntryFilter::default()
    };
    assert!(
        ds.list_entries(&by_rejected_selector)
            .await
            .expect("list")
            .is_empty()
    );

    // A subset or superset of the selectors is a different mapping and is accepted.
    let mut subset = full_entry("e3");
    subset.spiffe_id.clone_from(&original.spiffe_id);
    subset.selectors = vec![sel("unix", "uid:1000")];
    ds.create_entry(&subset).await.expect("subset is distinct");
    let mut superset = full_entry("e4");
    superset.spiffe_id.clone_from(&original.spiffe_id);
    superset.selectors.push(sel("unix", "path:/bin/app"));
    ds.create_entry(&superset)
        .await
        .expect("superset is distinct");

    // Separator characters inside selectors cannot make different sets collide.
    let a = simple_entry("c1", "spiffe://x/y", "spiffe://x/p", &[sel("a:b", "c")]);
    let b = simple_entry("c2", "spiffe://x/y", "spiffe://x/p", &[sel("a", "b:c")]);
    let c = simple_entry("c3", "spiffe://x/y", "spiffe://x/p", &[sel("a", "b\nc:d")]);
    let d = simple_entry(
        "c4",
        "spiffe://x/y",
        "spiffe://x/p",
        &[sel("a", "b"), sel("c", "d")],
    );
    for entry in [a, b, c, d] {
        ds.create_entry(&entry)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", entry.id));
    }
    assert_eq!(ds.count_entries().await.expect("count"), 7);
}

async fn check_concurrent_duplicate_creates(ds: &Datastore) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            let entry = simple_entry(
                &format!("race{i}"),
                "spiffe://example.org/race",
                "spiffe://example.org/agent",
                &[sel("unix", "uid:1"), sel("unix", "gid:1")],
            );
            ds.create_entry(&entry).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task panicked") {
            Ok(_) => created += 1,
            Err(DatastoreError::AlreadyExists(_)) => {}
            Err(err) => panic!("unexpected error from concurrent create: {err}"),
        }
    }
    assert_eq!(created, 1, "exactly one concurrent create must win");
    assert_eq!(ds.count_entries().await.expect("count"), 1);
}

async fn check_update_entry(ds: &Datastore) {
    let created = ds
        .create_entry(&full_entry("e1"))
        .await
        .expect("create entry");

    let changed = Entry {
        id: "e1".to_owned(),
        spiffe_id: "spiffe://example.org/renamed".to_owned(),
        parent_id: "spiffe://example.org/agent/node2".to_owned(),
        selectors: vec![
            sel("k8s", "ns:prod"),
            sel("k8s", "sa:web"),
            sel("unix", "uid:1"),
        ],
        x509_svid_ttl: 60,
        jwt_svid_ttl: 0,
        dns_names: vec![],
        federates_with: vec!["spiffe://a.org".to_owned(), "spiffe://b.org".to_owned()],
        hint: String::new(),
        admin: false,
        downstream: false,
        revision_number: 99, // ignored
        created_at: 5,       // ignored
        expires_at: 0,
    };
    let updated = ds.update_entry(&changed).await.expect("update entry");
    let expected = Entry {
        revision_number: 1,
        created_at: created.created_at,
        ..changed.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        ds.get_entry("e1").await.expect("get"),
        Some(expected.clone())
    );

    let again = ds.update_entry(&changed).await.expect("second update");
    assert_eq!(again.revision_number, 2);

    let missing = simple_entry("nope", "spiffe://x/y", "spiffe://x/p", &[sel("a", "b")]);
    let err = ds
        .update_entry(&missing)
        .await
        .expect_err("update of missing entry");
    assert!(
        matches!(&err, DatastoreError::NotFound(what) if what.contains("nope")),
        "unexpected error: {err}"
    );

    // Updating e2 into e1's mapping is rejected and leaves e2 untouched.
    let other = ds
        .create_entry(&simple_entry(
            "e2",
            "spiffe://example.org/other",
            "spiffe://example.org/agent/node2",
            &[sel("unix", "uid:2")],
        ))
        .await
        .expect("create e2");
    let mut clash = changed.clone();
    clash.id = "e2".to_owned();
    clash.selectors.reverse();
    let err = ds
        .update_entry(&clash)
        .await
        .expect_err("update into an existing mapping");
    assert!(
        matches!(err, DatastoreError::AlreadyExists(_)),
        "unexpected error: {err}"
    );
    assert_eq!(ds.get_entry("e2").await.expect("get e2"), Some(other));
}

async fn check_delete_entry(ds: &Datastore) {
    let created = ds
        .create_entry(&full_entry("e1"))
        .await
        .expect("create entry");
    let keep = ds
        .create_entry(&simple_entry(
            "e2",
            "spiffe://example.org/keep",
            "spiffe://example.org/agent/node1",
            &[sel("unix", "uid:1000")],
        ))
        .await
        .expect("create e2");

    let deleted = ds.delete_entry("e1").await.expect("delete");
    assert_eq!(deleted, created, "delete returns the entry as it was");
    assert_eq!(ds.get_entry("e1").await.expect("get"), None);
    assert_eq!(ds.count_entries().await.expect("count"), 1);

    let err = ds.delete_entry("e1").await.expect_err("second delete");
    assert!(
        matches!(&err, DatastoreError::NotFound(what) if what.contains("e1")),
        "unexpected error: {err}"
    );

    // The selectors went with the entry: only e2 still has uid:1000, none has gid:1000,
    // and re-creating e1 with a single selector yields exactly that selector (left-over
    // rows would show up here or collide on (entry_id, position)).
    let by_uid = EntryFilter {
        selectors: vec![sel("unix", "uid:1000")],
        ..EntryFilter::default()
    };
    assert_eq!(ds.list_entries(&by_uid).await.expect("list"), vec![keep]);
    let by_gid = EntryFilter {
        selectors: vec![sel("unix", "gid:1000")],
        ..EntryFilter::default()
    };
    assert!(ds.list_entries(&by_gid).await.expect("list").is_empty());
    let mut reborn = full_entry("e1");
    reborn.selectors = vec![sel("k8s", "ns:new")];
    ds.create_entry(&reborn).await.expect("re-create e1");
    let fetched = ds
        .get_entry("e1")
        .await
        .expect("get")
        .expect("e1 exists again");
    assert_eq!(fetched.selectors, vec![sel("k8s", "ns:new")]);
}

async fn check_list_entries(ds: &Datastore) {
    let node1 = "spiffe://example.org/agent/node1";
    let node2 = "spiffe://example.org/agent/node2";
    let web = "spiffe://example.org/web";
    let db = "spiffe://example.org/db";
    // IDs chosen so that byte order ("B" < "a") differs from most locale collations.
    let entries = [
        simple_entry(
            "b",
            web,
            node1,
            &[sel("unix", "uid:1"), sel("unix", "gid:1")],
        ),
        simple_entry("a", web, node2, &[sel("unix", "uid:1")]),
        simple_entry(
            "B",
            db,
            node1,
            &[sel("unix", "uid:2"), sel("unix", "gid:1")],
        ),
        simple_entry(
            "c",
            db,
            node2,
            &[
                sel("unix", "gid:1"),
                sel("unix", "uid:1"),
                sel("k8s", "ns:x"),
            ],
        ),
    ];
    for entry in &entries {
        ds.create_entry(entry).await.expect("create entry");
    }

    let list = |filter: EntryFilter| async move { ds.list_entries(&filter).await.expect("list") };

    let all = list(EntryFilter::default()).await;
    assert_eq!(ids(&all), ["B", "a", "b", "c"], "ordered by id, byte-wise");
    let c = all.iter().find(|e| e.id == "c").expect("c listed");
    assert_eq!(
        c.selectors, entries[3].selectors,
        "selector order preserved"
    );

    let by_spiffe = list(EntryFilter {
        spiffe_id: Some(web.to_owned()),
        ..EntryFilter::default()
    })
    .await;
    assert_eq!(ids(&by_spiffe), ["a", "b"]);

    let by_parent = list(EntryFilter {
        parent_id: Some(node1.to_owned()),
        ..EntryFilter::default()
    })
    .await;
    assert_eq!(ids(&by_parent), ["B", "b"]);

    let one_selector = list(EntryFilter {
        selectors: vec![sel("unix", "uid:1")],
        ..EntryFilter::default()
    })
    .await;
    assert_eq!(ids(&one_selector), ["a", "b", "c"]);
    // Matching entries come back with ALL their selectors, not just the filtered ones.
    assert_eq!(
        one_selector[2].selectors.len(),
        3,
        "full selector list returned"
    );

    let two_selectors = list(EntryFilter {
        selectors: vec![sel("unix", "gid:1"), sel("unix", "uid:1")],
        ..EntryFilter::default()
    })
    .await;
    assert_eq!(ids(&two_selectors), ["b", "c"]);

    let combined = list(EntryFilter {
        spiffe_id: Some(db.to_owned()),
        parent_id: Some(node2.to_owned()),
        selectors: vec![sel("unix", "gid:1")],
    })
    .await;
    assert_eq!(ids(&combined), ["c"]);

    let none = list(EntryFilter {
        parent_id: Some(node1.to_owned()),
        selectors: vec![sel("k8s", "ns:x")],
        ..EntryFilter::default()
    })
    .await;
    assert!(none.is_empty());

    // Type and value must match on the same selector.
    let crossed = list(EntryFilter {
        selectors: vec![sel("k8s", "uid:1")],
        ..EntryFilter::default()
    })
    .await;
    assert!(crossed.is_empty());
}

async fn check_join_token_single_use(ds: &Datastore) {
    let token = JoinToken {
        token: "secret-token".to_owned(),
        expires_at: Clock::system().unix_seconds() + 600,
    };
    ds.create_join_token(&token).await.expect("create token");
    let err = ds
        .create_join_token(&token)
        .await
        .expect_err("duplicate token");
    assert!(
        matches!(&err, DatastoreError::AlreadyExists(msg) if !msg.contains("secret-token")),
        "unexpected error (must not echo the token): {err}"
    );

    assert_eq!(
        ds.consume_join_token("secret-token")
            .await
            .expect("consume"),
        Some(token)
    );
    assert_eq!(
        ds.consume_join_token("secret-token")
            .await
            .expect("consume again"),
        None,
        "a token can be used once"
    );
    assert_eq!(
        ds.consume_join_token("never-created")
            .await
            .expect("consume unknown"),
        None
    );

    // Expired tokens are still handed out: checking expiry is the caller's job.
    let expired = JoinToken {
        token: "old".to_owned(),
        expires_at: 1,
    };
    ds.create_join_token(&expired)
        .await
        .expect("create expired");
    assert_eq!(
        ds.consume_join_token("old").await.expect("consume expired"),
        Some(expired)
    );
}

async fn check_join_token_concurrent_consumers(ds: &Datastore) {
    for round in 0..3 {
        let value = format!("contested-{round}");
        ds.create_join_token(&JoinToken {
            token: value.clone(),
            expires_at: Clock::system().unix_seconds() + 600,
        })
        .await
        .expect("create token");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let ds = ds.clone();
            let value = value.clone();
            tasks.push(tokio::spawn(
                async move { ds.consume_join_token(&value).await },
            ));
        }
        let mut winners = 0;
        for task in tasks {
            if task
                .await
                .expect("task panicked")
                .expect("consume")
                .is_some()
            {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "exactly one concurrent consumer gets the token");
    }
}

async fn check_prune_join_tokens(ds: &Datastore) {
    for (token, expires_at) in [("t100", 100), ("t150", 150), ("t200", 200), ("t300", 300)] {
        ds.create_join_token(&JoinToken {
            token: token.to_owned(),
            expires_at,
        })
        .await
        .expect("create token");
    }
    assert_eq!(ds.prune_join_tokens(200).await.expect("prune"), 2);
    assert_eq!(ds.prune_join_tokens(200).await.expect("prune again"), 0);
    assert_eq!(ds.consume_join_token("t100").await.expect("consume"), None);
    assert_eq!(ds.consume_join_token("t150").await.expect("consume"), None);
    assert!(
        ds.consume_join_token("t200")
            .await
            .expect("consume")
            .is_some(),
        "a token expiring exactly at the cut-off is kept"
    );
    assert!(
        ds.consume_join_token("t300")
            .await
            .expect("consume")
            .is_some()
    );
}

/// A token and its alias entry are stored together or not at all.
async fn check_join_token_with_alias(ds: &Datastore) {
    let alias = |id: &str| Entry {
        spiffe_id: "spiffe://example.org/node/alias".to_owned(),
        parent_id: "spiffe://example.org/spire/agent/join_token/t1".to_owned(),
        selectors: vec![sel(
            "spiffe_id",
            "spiffe://example.org/spire/agent/join_token/t1",
        )],
        ..full_entry(id)
    };
    let token = |value: &str| JoinToken {
        token: value.to_owned(),
        expires_at: Clock::system().unix_seconds() + 600,
    };
    let stored = ds
        .create_join_token_with_alias(&token("t1"), &alias("a1"))
        .await
        .expect("token and alias");
    assert_eq!(ds.get_entry("a1").await.expect("get"), Some(stored));

    // The same alias again (same SPIFFE ID, parent and selectors): neither is stored.
    let err = ds
        .create_join_token_with_alias(&token("t2"), &alias("a2"))
        .await
        .expect_err("duplicate alias");
    assert!(matches!(err, DatastoreError::AlreadyExists(_)), "{err}");
    assert_eq!(ds.consume_join_token("t2").await.expect("consume"), None);

    // A token that exists already: the new alias is rolled back with it.
    let mut other = alias("a3");
    other.spiffe_id = "spiffe://example.org/node/other".to_owned();
    let err = ds
        .create_join_token_with_alias(&token("t1"), &other)
        .await
        .expect_err("duplicate token");
    assert!(matches!(err, DatastoreError::AlreadyExists(_)), "{err}");
    assert_eq!(
        ds.get_entry("a3").await.expect("get"),
        None,
        "no alias without its token"
    );
    assert_eq!(
        ds.consume_join_token("t1").await.expect("consume"),
        Some(token("t1"))
    );
}

async fn check_attested_agents(ds: &Datastore) {
    let agent = AttestedAgent {
        spiffe_id: "spiffe://example.org/spire/agent/join_token/abc".to_owned(),
        attestation_type: "join_token".to_owned(),
        serial_number: "01ab".to_owned(),
        expires_at: 1_800_000_000,
        new_serial_number: String::new(),
        new_expires_at: 0,
        selectors: vec![sel("join_token", "abc"), sel("unix", "uid:0")],
        can_reattest: false,
        banned: false,
    };
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id)
            .await
            .expect("get missing"),
        None
    );
    ds.upsert_attested_agent(&agent)
        .await
        .expect("insert agent");
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(agent.clone())
    );

    // Upsert replaces every field.
    let replaced = AttestedAgent {
        attestation_type: "x509pop".to_owned(),
        serial_number: "02".to_owned(),
        expires_at: 1_900_000_000,
        new_serial_number: "02ff".to_owned(),
        new_expires_at: 1_950_000_000,
        selectors: vec![sel("x509pop", "subject:cn:node")],
        can_reattest: true,
        banned: true,
        ..agent.clone()
    };
    ds.upsert_attested_agent(&replaced)
        .await
        .expect("replace agent");
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(replaced.clone())
    );

    // A renewal records the new SVID as pending; the current one is untouched.
    ds.set_agent_new_svid(&agent.spiffe_id, "03ff", 2_000_000_000)
        .await
        .expect("record renewal");
    let pending = AttestedAgent {
        new_serial_number: "03ff".to_owned(),
        new_expires_at: 2_000_000_000,
        ..replaced.clone()
    };
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(pending.clone())
    );
    // Only the pending serial activates, and only once.
    for wrong in ["02", "02ff", "", "03FF"] {
        assert!(
            !ds.activate_agent_svid(&agent.spiffe_id, wrong)
                .await
                .expect("activate"),
            "{wrong:?} is not the pending serial"
        );
    }
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(pending.clone())
    );
    assert!(
        ds.activate_agent_svid(&agent.spiffe_id, "03ff")
            .await
            .expect("activate")
    );
    let updated = AttestedAgent {
        serial_number: "03ff".to_owned(),
        expires_at: 2_000_000_000,
        new_serial_number: String::new(),
        new_expires_at: 0,
        ..replaced.clone()
    };
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(updated.clone())
    );
    assert!(
        !ds.activate_agent_svid(&agent.spiffe_id, "03ff")
            .await
            .expect("activate again"),
        "nothing is pending any more"
    );
    assert!(
        !ds.activate_agent_svid("spiffe://example.org/nobody", "03ff")
            .await
            .expect("activate missing agent")
    );
    let err = ds
        .set_agent_new_svid("spiffe://example.org/nobody", "1", 1)
        .await
        .expect_err("update missing agent");
    assert!(
        matches!(err, DatastoreError::NotFound(_)),
        "unexpected error: {err}"
    );

    // A new attestation (upsert) replaces a pending SVID too.
    ds.set_agent_new_svid(&agent.spiffe_id, "04", 2_100_000_000)
        .await
        .expect("record renewal");
    let reattested = AttestedAgent {
        serial_number: "05".to_owned(),
        expires_at: 2_200_000_000,
        new_serial_number: String::new(),
        new_expires_at: 0,
        ..updated.clone()
    };
    ds.upsert_attested_agent(&reattested)
        .await
        .expect("re-attest");
    assert_eq!(
        ds.get_attested_agent(&agent.spiffe_id).await.expect("get"),
        Some(reattested.clone())
    );
    assert!(
        !ds.activate_agent_svid(&agent.spiffe_id, "04")
            .await
            .expect("activate"),
        "the renewal before the new attestation is void"
    );
    let updated = reattested;

    let other = AttestedAgent {
        spiffe_id: "spiffe://example.org/spire/agent/Z".to_owned(),
        selectors: vec![],
        ..agent.clone()
    };
    ds.upsert_attested_agent(&other)
        .await
        .expect("insert other");
    assert_eq!(
        ds.list_attested_agents().await.expect("list"),
        vec![other.clone(), updated.clone()],
        "ordered by SPIFFE ID, byte-wise ('Z' < 'j')"
    );

    assert!(
        ds.delete_attested_agent(&agent.spiffe_id)
            .await
            .expect("delete")
    );
    assert!(
        !ds.delete_attested_agent(&agent.spiffe_id)
            .await
            .expect("delete again")
    );
    assert_eq!(ds.list_attested_agents().await.expect("list"), vec![other]);
}

async fn check_bundles(ds: &Datastore) {
    assert_eq!(ds.get_bundle("example.org").await.expect("get"), None);
    let bundle = Bundle {
        trust_domain: "example.org".to_owned(),
        x509_authorities: vec![vec![0x30, 0x82, 0x01, 0x00, 0xff], vec![0, 1, 2, 3]],
        jwt_authorities: vec![JwtKey {
            key_id: "kid-1".to_owned(),
            public_key: vec![0x30, 0x59, 0x00, 0xfe],
            expires_at: 1_900_000_000,
        }],
        sequence_number: 42, // ignored
        refresh_hint: 300,
    };
    let stored = ds.set_bundle(&bundle).await.expect("set bundle");
    assert_eq!(stored.sequence_number, 1, "first set starts at 1");
    let expected = Bundle {
        sequence_number: 1,
        ..bundle.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(
        ds.get_bundle("example.org").await.expect("get"),
        Some(expected)
    );

    let mut rotated = bundle.clone();
    rotated.x509_authorities.push(vec![9; 600]);
    rotated.jwt_authorities.clear();
    rotated.refresh_hint = 0;
    for expected_seq in 2..=4 {
        let stored = ds.set_bundle(&rotated).await.expect("set bundle again");
        assert_eq!(stored.sequence_number, expected_seq);
    }
    assert_eq!(
        ds.get_bundle("example.org").await.expect("get"),
        Some(Bundle {
            sequence_number: 4,
            ..rotated.clone()
        })
    );

    let federated = Bundle {
        trust_domain: "Other.org".to_owned(),
        ..Bundle::default()
    };
    ds.set_bundle(&federated).await.expect("set federated");
    let listed = ds.list_bundles().await.expect("list");
    let domains: Vec<&str> = listed.iter().map(|b| b.trust_domain.as_str()).collect();
    assert_eq!(domains, ["Other.org", "example.org"]);

    assert!(ds.delete_bundle("example.org").await.expect("delete"));
    assert!(!ds.delete_bundle("example.org").await.expect("delete again"));
    assert_eq!(ds.get_bundle("example.org").await.expect("get"), None);
    let recreated = ds.set_bundle(&bundle).await.expect("set after delete");
    assert_eq!(
        recreated.sequence_number, 1,
        "a new bundle starts over at 1"
    );
}

async fn check_bundle_compare_and_set(ds: &Datastore) {
    let bundle = Bundle {
        trust_domain: "example.org".to_owned(),
        x509_authorities: vec![vec![1, 2, 3]],
        refresh_hint: 300,
        ..Bundle::default()
    };
    let first = ds
        .set_bundle_if(&bundle, None)
        .await
        .expect("create")
        .expect("no bundle yet, so it is created");
    assert_eq!(first.sequence_number, 1);
    assert_eq!(
        ds.set_bundle_if(&bundle, None).await.expect("create again"),
        None,
        "a second creator loses"
    );

    // Two servers read sequence 1 and each add their own CA: the second write must fail
    // instead of dropping the first server's CA.
    let mut a = first.clone();
    a.x509_authorities.push(vec![0xa]);
    let mut b = first.clone();
    b.x509_authorities.push(vec![0xb]);
    let stored_a = ds
        .set_bundle_if(&a, Some(1))
        .await
        .expect("a")
        .expect("a wins");
    assert_eq!(stored_a.sequence_number, 2);
    assert_eq!(
        ds.set_bundle_if(&b, Some(1)).await.expect("b"),
        None,
        "b read a stale bundle"
    );
    let mut b = ds
        .get_bundle("example.org")
        .await
        .expect("get")
        .expect("some");
    b.x509_authorities.push(vec![0xb]);
    let stored_b = ds
        .set_bundle_if(&b, Some(b.sequence_number))
        .await
        .expect("b again")
        .expect("b wins on a fresh read");
    assert_eq!(stored_b.sequence_number, 3);
    assert_eq!(
        ds.get_bundle("example.org")
            .await
            .expect("get")
            .expect("some")
            .x509_authorities,
        vec![vec![1, 2, 3], vec![0xa], vec![0xb]]
    );
}

async fn check_reopen_keeps_data(url: &str) {
    let ds = Datastore::connect(url).await.expect("first open");
    ds.create_entry(&full_entry("e1")).await.expect("create");
    ds.create_join_token(&JoinToken {
        token: "t".to_owned(),
        expires_at: 10,
    })
    .await
    .expect("create token");
    ds.set_bundle(&Bundle {
        trust_domain: "example.org".to_owned(),
        ..Bundle::default()
    })
    .await
    .expect("set bundle");
    let entry = ds.get_entry("e1").await.expect("get").expect("e1 exists");
    ds.close().await;

    for _ in 0..2 {
        // Migrations run again on every open and must leave existing data alone.
        let ds = Datastore::connect(url).await.expect("reopen");
        assert_eq!(ds.get_entry("e1").await.expect("get"), Some(entry.clone()));
        assert_eq!(ds.count_entries().await.expect("count"), 1);
        let bundle = ds
            .get_bundle("example.org")
            .await
            .expect("get bundle")
            .expect("bundle exists");
        assert_eq!(bundle.sequence_number, 1);
        ds.close().await;
    }
    let ds = Datastore::connect(url).await.expect("reopen");
    assert!(ds.consume_join_token("t").await.expect("consume").is_some());
    ds.close().await;
}

#[tokio::test]
async fn sqlite_file_is_created_with_wal() {
    use sqlx::{Connection, SqliteConnection};

    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("sub.db");
    assert!(!path.exists());
    let ds = Datastore::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open SQLite datastore");
    assert!(path.exists(), "the database file is created");
    ds.close().await;

    // journal_mode=WAL is persistent in the file: a plain connection sees it.
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open file directly");
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("read journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unsupported_url_is_rejected() {
    let cases = [
        ("mysql://root:hunter2@localhost/spire", "mysql"),
        ("file:///tmp/x.db", "file"),
        ("no-scheme-at-all", ""),
    ];
    for (url, scheme) in cases {
        let err = Datastore::connect(url)
            .await
            .expect_err("unsupported URL must be rejected");
        match &err {
            DatastoreError::Sql(SqlError::UnsupportedUrl(got)) => assert_eq!(got, scheme),
            other => panic!("expected UnsupportedUrl for {url}, got {other}"),
        }
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "password leaked: {message}");
        assert!(
            message.contains("sqlite://"),
            "message lists what is supported: {message}"
        );
    }
}
