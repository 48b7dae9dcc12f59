//! Two Nexus replicas over one PostgreSQL database, in one process: a policy changed through
//! one is enforced by the other, with the change listener up, down, and back.

use std::sync::Arc;
use std::time::Duration;

use nexus::authz::{self, Grant};
use nexus::error::ServiceError;
use nexus::keys::Lifecycle;
use nexus::policy::access::Access;
use nexus::policy::{NewPolicy, PolicyName};
use nexus::service::Nexus;
use nexus::store::Store;
use nexus_api::model::PutPolicyRequest;
use nexus_api::routes::{self, Action};
use nexus_crypto::{KeyCheck, RootKey, combine, split};
use policies::Permission;
use spiffe::SpiffeId;

const APP: &str = "spiffe://td/app/billing";

/// A ready replica on `url`, unsealed with (a copy of) `root`.
async fn replica(url: &str, root: &RootKey) -> Arc<Nexus> {
    let store = Store::connect(url).await.expect("store");
    let nexus = Arc::new(Nexus::new(
        store,
        Lifecycle::new(2, 3),
        Access::new("td").expect("access"),
        10,
        nexus::audit::AuditLog::stdout(),
    ));
    let copy = combine(
        &split(root, 2, 3).expect("split"),
        2,
        &KeyCheck::compute(root).expect("check"),
    )
    .expect("combine");
    nexus::keys::install(&nexus, copy).await.expect("install");
    nexus
}

fn app() -> SpiffeId {
    SpiffeId::new(APP).expect("SPIFFE ID")
}

/// The Pilot superuser's grant for `action` on the policy route, from the authoriser.
async fn admin_grant(nexus: &Nexus, action: Action) -> Grant {
    let admin = SpiffeId::new("spiffe://td/spike/pilot/role/superuser").expect("SPIFFE ID");
    let requirement = authz::requirement(routes::POLICY, Some(action)).expect("classified");
    let judgement = authz::authorize(nexus, &admin, requirement, None).await;
    judgement
        .outcome
        .expect("the superuser may manage policies")
}

/// Grants the app `read` on `db/.*`, through `nexus`.
async fn put_grant(nexus: &Nexus) -> Result<(), ServiceError> {
    let policy = NewPolicy::parse(grant()).expect("a valid policy");
    let grant = admin_grant(nexus, Action::Put).await;
    nexus.policies().put(&grant, &policy).await
}

/// Deletes the grant, through `nexus`.
async fn revoke(nexus: &Nexus) -> Result<(), ServiceError> {
    let name = PolicyName::parse("billing").expect("a valid name");
    let grant = admin_grant(nexus, Action::Delete).await;
    nexus.policies().delete(&grant, &name).await
}

fn grant() -> PutPolicyRequest {
    PutPolicyRequest {
        name: "billing".into(),
        spiffe_id_pattern: "spiffe://td/app/billing".into(),
        path_pattern: "db/.*".into(),
        permissions: vec!["read".into()],
    }
}

/// Whether `nexus` lets the app read, judged as a request would be.
async fn app_may_read(nexus: &Nexus) -> bool {
    nexus.policies().current().await.expect("current policies");
    nexus.access.allows(&app(), "db/x", Permission::Read)
}

/// Runs `op` until it succeeds or fails other than with "the datastore is unavailable" (a
/// killed pooled connection is replaced on the next try).
async fn retry_unavailable<F, Fut>(mut op: F) -> Result<(), ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>>,
{
    for _ in 0..50 {
        match op().await {
            Err(ServiceError::Unavailable) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => return outcome,
        }
    }
    op().await
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listener_every_decision_reads_the_generation() {
    let db = common_sql::testing::TestDatabase::create().await;
    let root = RootKey::generate().expect("root key");
    let a = replica(db.url(), &root).await;
    let b = replica(db.url(), &root).await;
    assert!(!b.access.changes_pushed());
    assert!(!app_may_read(&b).await);

    put_grant(&a).await.expect("put through a");
    assert!(app_may_read(&b).await, "b sees the grant at once");
    revoke(&a).await.expect("delete through a");
    assert!(!app_may_read(&b).await, "b sees the revocation at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_pushes_changes_and_recovers_from_a_killed_connection() {
    let db = common_sql::testing::TestDatabase::create().await;
    let root = RootKey::generate().expect("root key");
    let a = replica(db.url(), &root).await;
    let b = replica(db.url(), &root).await;
    let sync = tokio::spawn(nexus::policy::sync::run(b.clone(), db.url().to_owned()));
    wait_until("b's listener to connect", || b.access.changes_pushed()).await;

    // Pushed: b's cache is reloaded by the notification, without any request asking.
    put_grant(&a).await.expect("put through a");
    let stored = a.store.policy_generation().await.expect("generation");
    wait_until("b to load the new generation", || {
        b.access.generation() == stored
    })
    .await;
    assert!(b.access.allows(&app(), "db/x", Permission::Read));

    // Every connection of the database killed, listeners included: b reconnects and catches
    // up with a change made meanwhile.
    let admin = common_sql::testing::admin(db.url()).await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&admin)
    .await
    .expect("terminate backends");
    let deleted = retry_unavailable(|| revoke(&a)).await;
    deleted.expect("delete through a");
    let stored = a.store.policy_generation().await.expect("generation");
    wait_until("b's listener to reconnect", || b.access.changes_pushed()).await;
    wait_until("b to catch up with the revocation", || {
        b.access.generation() == stored
    })
    .await;
    assert!(!app_may_read(&b).await);

    put_grant(&a).await.expect("put through a again");
    let stored = a.store.policy_generation().await.expect("generation");
    wait_until("b to load the newest generation", || {
        b.access.generation() == stored
    })
    .await;
    assert!(b.access.allows(&app(), "db/x", Permission::Read));
    sync.abort();
    admin.close().await;
}
