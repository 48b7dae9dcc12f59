//! The authoriser on its own, against a real SQLite store and a real root key: which caller
//! gets a grant for which row of the table (and with which audit decision), and operations
//! refusing a grant made for something else. The trust domain `fed` is federated and listed
//! for the recover role only: its IDs are ordinary callers but for its recover role.

use std::sync::Arc;

use nexus::audit::{AuditLog, Decision};
use nexus::authz::{self, Grant, Object, Refusal, Requirement, Scope, TABLE};
use nexus::error::ServiceError;
use nexus::keys::Lifecycle;
use nexus::policy::NewPolicy;
use nexus::policy::access::Access;
use nexus::secrets::SecretPath;
use nexus::service::Nexus;
use nexus::store::Store;
use nexus_api::model::{PutPolicyRequest, Values};
use nexus_api::routes::{self, Action};
use nexus_crypto::RootKey;
use policies::{Permission, Role, RoleDomains};
use spiffe::SpiffeId;

const ADMIN: &str = "spiffe://td/spike/pilot/role/superuser";
const RECOVER: &str = "spiffe://td/spike/pilot/role/recover";
const RESTORE: &str = "spiffe://td/spike/pilot/role/restore";
const LITE: &str = "spiffe://td/spike/workload/role/lite/app";
const KEEPER: &str = "spiffe://td/spike/keeper/k1";
const NEXUS: &str = "spiffe://td/spike/nexus";
/// Granted `read` on `billing/.*` by a policy.
const APP: &str = "spiffe://td/app/billing";
/// Granted nothing.
const STRANGER: &str = "spiffe://td/app/other";
/// Looks like the superuser, is not.
const LOOKALIKE: &str = "spiffe://td/spike/pilot/role/superuser-x";
/// The recover role of `fed`, which is listed for that role.
const FED_RECOVER: &str = "spiffe://fed/spike/pilot/role/recover";
/// The superuser's path in `fed`, which is not listed for that role: an ordinary caller.
const FED_ADMIN: &str = "spiffe://fed/spike/pilot/role/superuser";
/// A workload of `fed` granted `read` on `billing/.*` by the same policy as [`APP`].
const FED_APP: &str = "spiffe://fed/app/billing";
const CALLERS: [&str; 12] = [
    ADMIN,
    RECOVER,
    RESTORE,
    LITE,
    KEEPER,
    NEXUS,
    APP,
    STRANGER,
    LOOKALIKE,
    FED_RECOVER,
    FED_ADMIN,
    FED_APP,
];

fn id(id: &str) -> SpiffeId {
    SpiffeId::new(id).expect("SPIFFE ID")
}

struct Setup {
    nexus: Arc<Nexus>,
    _dir: tempfile::TempDir,
}

async fn nexus(ready: bool) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("nexus.db").display());
    let nexus = Arc::new(Nexus::new(
        Store::connect(&url).await.expect("store"),
        Lifecycle::new(2, 3),
        Access::for_roles(RoleDomains::local("td").with_foreign(Role::Recover, ["fed"]))
            .expect("access"),
        3,
        AuditLog::stdout(),
    ));
    if ready {
        nexus::keys::install(&nexus, RootKey::generate().expect("key"))
            .await
            .expect("install");
        let grant = grant(&nexus, ADMIN, routes::POLICY, Some(Action::Put), None).await;
        let policy = NewPolicy::parse(PutPolicyRequest {
            name: "billing".into(),
            spiffe_id_pattern: "^spiffe://(td|fed)/app/billing$".into(),
            path_pattern: "^billing/.*$".into(),
            permissions: vec!["read".into()],
        })
        .expect("valid");
        nexus.policies().put(&grant, &policy).await.expect("put");
    }
    Setup { nexus, _dir: dir }
}

/// `caller`'s grant for `action` on `route`, which must be allowed.
async fn grant(
    nexus: &Nexus,
    caller: &str,
    route: &str,
    action: Option<Action>,
    path: Option<&str>,
) -> Grant {
    let requirement = authz::requirement(route, action).expect("classified");
    let judgement = authz::authorize(nexus, &id(caller), requirement, path).await;
    judgement
        .outcome
        .unwrap_or_else(|e| panic!("{caller} on {route}: {e}"))
}

/// Whether the table lets `caller` do what `requirement` guards on `billing/db`.
fn expected(requirement: Requirement, caller: &str) -> bool {
    match requirement {
        Requirement::Anyone | Requirement::ReadableFilter => true,
        Requirement::Role(Role::Recover) => caller == RECOVER || caller == FED_RECOVER,
        Requirement::Role(Role::Restore) => caller == RESTORE,
        Requirement::Role(Role::Superuser) => caller == ADMIN,
        Requirement::Role(other) => panic!("no route is for the {other} role"),
        Requirement::Permission { permission, on } => {
            caller == ADMIN
                || match on {
                    Object::BodyPath => {
                        (caller == APP || caller == FED_APP) && permission == Permission::Read
                    }
                    Object::System(_) => false,
                    Object::SystemOrRole(_, Role::Lite) => caller == LITE,
                    Object::SystemOrRole(..) => false,
                }
        }
    }
}

#[tokio::test]
async fn every_row_of_the_table_grants_exactly_its_callers() {
    let setup = nexus(true).await;
    for rule in TABLE {
        for caller in CALLERS {
            let judgement = authz::authorize(
                &setup.nexus,
                &id(caller),
                rule.requirement,
                Some("billing/db"),
            )
            .await;
            let allowed = expected(rule.requirement, caller);
            let what = format!("{caller} on {} {:?}", rule.route, rule.action);
            match (&judgement.outcome, allowed) {
                (Ok(grant), true) => {
                    assert_eq!(grant.caller(), &id(caller), "{what}");
                    let decision = if rule.requirement == Requirement::Anyone {
                        Decision::None
                    } else {
                        Decision::Allow
                    };
                    assert_eq!(judgement.decision, decision, "{what}");
                }
                (Err(Refusal::Denied(denied)), false) => {
                    assert_eq!(judgement.decision, Decision::Deny, "{what}");
                    assert!(denied.to_string().starts_with(caller), "{denied}");
                }
                (outcome, _) => panic!("{what}: expected allowed={allowed}, got {outcome:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_sealed_nexus_judges_roles_but_nothing_that_needs_the_key() {
    let setup = nexus(false).await;
    let on_body = authz::requirement(routes::SECRETS, Some(Action::Get)).expect("classified");
    let judgement = authz::authorize(&setup.nexus, &id(ADMIN), on_body, Some("db/x")).await;
    assert!(matches!(
        judgement.outcome,
        Err(Refusal::NotReady(ServiceError::NotReady(_)))
    ));
    assert_eq!(judgement.decision, Decision::None);
    assert_eq!(judgement.target.as_deref(), Some("db/x"));

    let recover = Requirement::Role(Role::Recover);
    let judgement = authz::authorize(&setup.nexus, &id(RECOVER), recover, None).await;
    assert_eq!(
        judgement.outcome.as_ref().map(Grant::scope).ok(),
        Some(&Scope::Role(Role::Recover))
    );
    let judgement = authz::authorize(&setup.nexus, &id(ADMIN), recover, None).await;
    assert!(matches!(judgement.outcome, Err(Refusal::Denied(_))));
}

#[tokio::test]
async fn operations_refuse_a_grant_made_for_something_else_and_change_nothing() {
    let setup = nexus(true).await;
    let nexus = &setup.nexus;
    let secrets = nexus.secrets();
    let path = |p: &str| SecretPath::parse(p).expect("path");
    let values: Values = [("k".to_owned(), "v".to_owned())].into();

    let write_a = grant(
        nexus,
        ADMIN,
        routes::SECRETS,
        Some(Action::Put),
        Some("billing/a"),
    )
    .await;
    assert_eq!(
        secrets
            .put(&write_a, &path("billing/a"), &values, None)
            .await
            .expect("covered"),
        1
    );
    // The same grant for another path, or for reading, is refused.
    let refused = secrets
        .put(&write_a, &path("billing/b"), &values, None)
        .await;
    assert!(
        matches!(refused, Err(ServiceError::Internal)),
        "{refused:?}"
    );
    let refused = secrets.get(&write_a, &path("billing/a"), 0).await;
    assert!(
        matches!(refused, Err(ServiceError::Internal)),
        "{refused:?}"
    );

    // A reader's grant does not write, delete or list.
    let read_a = grant(
        nexus,
        APP,
        routes::SECRETS,
        Some(Action::Get),
        Some("billing/a"),
    )
    .await;
    assert_eq!(
        secrets
            .get(&read_a, &path("billing/a"), 0)
            .await
            .expect("covered")
            .version,
        1
    );
    assert!(
        secrets
            .put(&read_a, &path("billing/a"), &values, None)
            .await
            .is_err()
    );
    assert!(secrets.list(&read_a).await.is_err());

    // A role's grant does not reach another role's operation, nor secrets.
    let recover = grant(nexus, RECOVER, routes::RECOVER, None, None).await;
    assert!(matches!(
        nexus::keys::rotation::rotate(nexus, &recover).await,
        Err(ServiceError::Internal)
    ));
    assert!(matches!(
        nexus::keys::break_glass::restore(nexus, &recover, 1, &[1; 32]).await,
        Err(ServiceError::Internal)
    ));
    assert!(nexus::cipher::key(nexus, &recover).await.is_err());

    // Nothing but the one covered put was stored.
    assert_eq!(nexus.store.list_paths().await.expect("list"), ["billing/a"]);
    let meta = nexus.store.metadata("billing/a").await.expect("metadata");
    assert_eq!(meta.latest_version, 1);
    assert_eq!(meta.created_by, ADMIN, "the grant's caller is the writer");
}
