//! Several Nexus replicas over one PostgreSQL database, as real processes: one initialises,
//! all serve the same secrets, a policy changed through one holds at once on the others;
//! killed database connections lose no acknowledged write, and while the database is down
//! Nexus answers 503 and then recovers by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common_sql::testing::TestDatabase;
use sqlx::Connection;
use tests::secrets::SecretsStack;
use tests::{stderr, stdout};

const PASSWORD: &str = "replicated-Pa55word-41c9e2";

/// Builds the binaries, then starts the test's clock (the printed timings are the test's).
fn clock() -> Instant {
    tests::bin_dir();
    Instant::now()
}

/// Identity plane, three keepers and two Nexus replicas on `db`, both ready (the seal suite
/// uses it too).
pub(super) async fn two_replicas(
    dir: &std::path::Path,
    db: &TestDatabase,
) -> (SecretsStack, String, String) {
    let mut stack = SecretsStack::start_without_nexus(dir, 3, Some(db.url())).await;
    // Started together, so both find the database empty and race to initialise it.
    let b = stack.start_nexus_and_replicas(1).await.remove(0);
    let a = stack.nexus_url();
    stack.wait_ready_at(&a).await;
    stack.wait_ready_at(&b).await;
    (stack, a, b)
}

#[tokio::test]
async fn replicas_started_together_initialise_once_and_agree() {
    let started = clock();
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (stack, a, b) = two_replicas(dir.path(), &db).await;
    println!("two replicas ready after {:?}", started.elapsed());

    let logs = stack.nexus_logs();
    assert_eq!(
        logs.matches("root key created").count(),
        1,
        "exactly one replica creates the root key:\n{logs}"
    );

    stack.spike_put_at(&a, "db/password", "password", PASSWORD);
    assert_eq!(
        stack.spike_get_at(&b, "db/password", "password").trim(),
        PASSWORD
    );
    stack.spike_ok_at(&b, &["secret", "put", "db/password", "password=second"]);
    assert_eq!(
        stack.spike_get_at(&a, "db/password", "password").trim(),
        "second"
    );
    assert_eq!(
        stack
            .spike_ok_at(&a, &["secret", "get", "db/password", "password", "-v", "1"])
            .trim(),
        PASSWORD
    );
    println!("replicas test done after {:?}", started.elapsed());
}

#[tokio::test]
async fn policy_changed_through_one_replica_holds_at_once_on_the_other() {
    let started = clock();
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (stack, a, b) = two_replicas(dir.path(), &db).await;
    stack.spike_ok_at(&a, &["secret", "put", "apps/billing/key", "key=k1"]);
    let billing = stack.workload("billing-app", "spiffe://example.org/app/billing");
    let policy = dir.path().join("billing.yaml");
    std::fs::write(
        &policy,
        "name: billing\nspiffeidPattern: ^spiffe://example\\.org/app/billing$\npathPattern: ^apps/billing/.*$\npermissions: [read]\n",
    )
    .expect("policy file");
    let read_at_b = || {
        stack.run_at(
            &b,
            &billing,
            &["secret", "get", "apps/billing/key", "key"],
            None,
        )
    };

    let before = read_at_b();
    assert!(!before.status.success(), "no grant yet");
    // Granted and revoked through A, each checked through B right after A acknowledged it,
    // with no waiting: PostgreSQL notifies B as A's transaction commits, and a request that
    // reaches B while it reloads waits for the reload.
    for round in 0..3 {
        stack.spike_ok_at(
            &a,
            &["policy", "apply", "--file", &policy.display().to_string()],
        );
        let granted = read_at_b();
        assert!(
            granted.status.success(),
            "round {round}: B refused a grant A acknowledged: {}",
            stderr(&granted)
        );
        assert_eq!(stdout(&granted).trim(), "k1");

        stack.spike_ok_at(&a, &["policy", "delete", "billing", "--yes"]);
        let revoked = read_at_b();
        assert!(
            !revoked.status.success(),
            "round {round}: B served a grant A had revoked"
        );
        assert!(
            stderr(&revoked).contains("Not authorised"),
            "{}",
            stderr(&revoked)
        );
    }
    println!("policy test done after {:?}", started.elapsed());
}

/// Kills every database connection of the test database but this one; returns how many.
async fn terminate_backends(db: &TestDatabase) -> usize {
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("admin connection");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await
    .expect("terminate backends");
    let _ = conn.close().await;
    killed.into_iter().filter(|k| *k).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killed_database_connections() {
    let started = clock();
    let db = Arc::new(TestDatabase::create().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = SecretsStack::start_with_database(dir.path(), 3, db.url()).await;
    let pid = stack.nexus.as_ref().expect("nexus").pid();

    // Every connection Nexus holds is killed, again and again, while three writers write.
    let blips_done = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn({
        let db = db.clone();
        let blips_done = blips_done.clone();
        async move {
            let mut killed = 0;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                killed += terminate_backends(&db).await;
            }
            blips_done.store(true, Ordering::SeqCst);
            killed
        }
    });
    let writes: Vec<Write> = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..3)
                .map(|w| {
                    let (stack, blips_done) = (&stack, &blips_done);
                    scope.spawn(move || write_until(stack, w, blips_done))
                })
                .collect();
            writers
                .into_iter()
                .flat_map(|w| w.join().expect("writer thread"))
                .collect()
        })
    });
    let killed = killer.await.expect("killer");
    let acknowledged: Vec<&Write> = writes.iter().filter(|w| w.refusal.is_none()).collect();
    let refusals: Vec<&str> = writes.iter().filter_map(|w| w.refusal.as_deref()).collect();
    println!(
        "{} writes acknowledged, {} refused, {killed} connections killed, in {:?}",
        acknowledged.len(),
        refusals.len(),
        started.elapsed()
    );
    assert!(killed > 0, "the blips killed Nexus's connections");
    for refusal in &refusals {
        // A write caught by a blip is refused as "retry later", never as an internal error.
        assert!(refusal.contains("datastore is unavailable"), "{refusal}");
    }

    // Nexus recovers by itself, without a restart...
    tests::wait_for(
        "Nexus to accept writes again",
        Duration::from_secs(10),
        || {
            let ok = stack
                .spike(&["secret", "put", "blip/after", "v=after"])
                .status
                .success();
            async move { ok.then_some(()) }
        },
    )
    .await;
    assert!(stack.nexus.as_mut().expect("nexus").try_exit().is_none());
    assert_eq!(stack.nexus.as_ref().expect("nexus").pid(), pid);
    // ...and every write it acknowledged is there.
    for write in acknowledged {
        let value = stack.spike_ok(&["secret", "get", &write.path, "v"]);
        assert_eq!(
            value.trim(),
            write.value,
            "acknowledged write to {}",
            write.path
        );
    }
    println!("blip test done after {:?}", started.elapsed());
}

/// One attempted write: the path, the value, and spike's error if it was refused.
struct Write {
    path: String,
    value: String,
    refusal: Option<String>,
}

/// Writer `w` puts new secrets until the blips are over (and at least ten).
fn write_until(stack: &SecretsStack, w: usize, blips_done: &AtomicBool) -> Vec<Write> {
    let mut writes = Vec::new();
    while !blips_done.load(Ordering::SeqCst) || writes.len() < 10 {
        let i = writes.len();
        let path = format!("blip/w{w}/k{i}");
        let value = format!("value-{w}-{i}");
        let out = stack.spike(&["secret", "put", &path, &format!("v={value}")]);
        let refusal = (!out.status.success()).then(|| stderr(&out));
        writes.push(Write {
            path,
            value,
            refusal,
        });
    }
    writes
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection reset, new ones
/// refused) and restore, standing for a database outage.
struct Outage {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Outage {
    /// A working proxy to `upstream` (`host:port`), on a port the kernel picks.
    async fn proxy(upstream: &str) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let mut outage = Outage {
            port: listener.local_addr().expect("the proxy's address").port(),
            upstream: upstream.to_owned(),
            task: None,
        };
        outage.serve(listener);
        outage
    }

    /// The database cannot be reached: established connections drop, new ones are refused.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the accept loop drops the listener and, through the JoinSet, every
            // relay with its sockets.
            task.abort();
        }
    }

    /// The database is back, on the same port.
    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("binding the proxy port");
        self.serve(listener);
    }

    /// Relays every connection `listener` accepts to the upstream.
    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut relays = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                relays.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_answers_503_while_the_database_is_down_and_recovers() {
    let started = clock();
    let db = TestDatabase::create().await;
    let options: sqlx::postgres::PgConnectOptions = db.url().parse().expect("database URL");
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let mut outage = Outage::proxy(&upstream).await;
    let proxied = db
        .url()
        .replacen(&upstream, &format!("127.0.0.1:{}", outage.port), 1);
    assert_ne!(
        proxied,
        db.url(),
        "the test URL names host and port explicitly"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = SecretsStack::start_with_database(dir.path(), 3, &proxied).await;
    stack.spike_put("db/password", "password", PASSWORD);

    outage.cut();
    let down = Instant::now();
    let refused = stack.spike(&["secret", "get", "db/password", "password"]);
    println!("refused after {:?}", down.elapsed());
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("datastore is unavailable"),
        "{}",
        stderr(&refused)
    );
    assert!(down.elapsed() < Duration::from_secs(10), "refused promptly");

    outage.restore().await;
    let value = tests::wait_for("Nexus to serve again", Duration::from_secs(10), || {
        let out = stack.spike(&["secret", "get", "db/password", "password"]);
        async move { out.status.success().then(|| stdout(&out)) }
    })
    .await;
    assert_eq!(value.trim(), PASSWORD);
    stack.spike_ok(&["secret", "put", "db/password", "password=after-outage"]);
    println!("outage test done after {:?}", started.elapsed());
}

/// A rotation through one replica: the other reads the re-wrapped records at once (it
/// recovers the new key from the rotation record, or from the keepers once that is gone),
/// its writes land under the new key, and the first reads them; neither is restarted.
#[tokio::test]
async fn a_rotation_through_one_replica_is_picked_up_by_the_other() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (stack, a, b) = two_replicas(dir.path(), &db).await;
    for i in 0..5 {
        stack.spike_ok_at(
            &a,
            &["secret", "put", &format!("r/{i}"), &format!("v=value-{i}")],
        );
    }
    // B has read them under the old key.
    assert_eq!(stack.spike_get_at(&b, "r/0", "v").trim(), "value-0");

    stack.spike_ok_at(&a, &["operator", "rotate"]);
    for url in [&b, &a] {
        for i in 0..5 {
            let value = stack.spike_ok_at(url, &["secret", "get", &format!("r/{i}"), "v"]);
            assert_eq!(value.trim(), format!("value-{i}"), "{url}");
        }
    }
    stack.spike_ok_at(&b, &["secret", "put", "r/from-b", "v=after-rotation"]);
    assert_eq!(
        stack.spike_get_at(&a, "r/from-b", "v").trim(),
        "after-rotation"
    );
    let logs = stack.nexus_logs();
    assert!(
        logs.contains("another Nexus rotated the root key"),
        "{logs}"
    );
}
