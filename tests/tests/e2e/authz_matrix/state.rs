//! The state the matrix runs against, and the proof that it wrote nothing a refused call
//! sent: each caller's secret and policy are read before and after, and compared with what
//! the table allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use nexus_api::routes::{self, Action};
use serde_json::{Value, json};
use tests::mtls::{self, Answer, Request};
use tests::secrets::SecretsStack;

use super::callers::{CALLERS, Caller};
use super::requests::{Fixtures, PLAINTEXT, octets, policy_body};
use super::{NEXUS_MATRIX, OK};
/// Sends `request` as the admin; the answer must be one of `statuses`.
pub async fn admin(
    tls: &Arc<rustls::ClientConfig>,
    port: u16,
    request: Request,
    statuses: &[u16],
) -> Answer {
    let answer = mtls::send(tls, port, &request)
        .await
        .unwrap_or_else(|e| panic!("{} as the admin: {e}", request.target));
    assert!(
        statuses.contains(&answer.status),
        "{} as the admin: {} {}",
        request.target,
        answer.status,
        answer.text()
    );
    answer
}

pub fn post(route: &str, action: Action, body: Value) -> Request {
    Request::post_json(action.url(route), &body)
}

/// Each caller's secret (two versions) and policy, the granted workload's policies, a
/// policy naming role IDs (which must grant them nothing), ciphertexts, keeper 1's shard.
pub async fn fixtures(
    stack: &SecretsStack,
    su: &Arc<rustls::ClientConfig>,
    nexus: &Arc<rustls::ClientConfig>,
) -> Fixtures {
    let port = stack.nexus_port;
    for caller in CALLERS {
        for version in ["fixture-1", "fixture-2"] {
            let body = json!({ "path": caller.secret_path(), "values": { "v": version } });
            admin(su, port, post(routes::SECRETS, Action::Put, body), &[200]).await;
        }
        let policy = policy_body(caller, "fixture");
        admin(su, port, post(routes::POLICY, Action::Put, policy), &[200]).await;
    }
    let granted = r"^spiffe://example\.org/app/granted$";
    let roles = r"^spiffe://example\.org/spike/(nexus|keeper|bootstrap|pilot/role/(recover|restore)|workload/role/lite)$";
    for (name, id, path, permissions) in [
        (
            "granted-secret",
            granted,
            r"^matrix/granted$",
            json!(["read", "write", "list"]),
        ),
        (
            "granted-acl",
            granted,
            r"^spike/system/acl$",
            json!(["read", "list"]),
        ),
        (
            "granted-cipher",
            granted,
            r"^spike/system/cipher/exec$",
            json!(["execute"]),
        ),
        (
            "roles-are-not-grantable",
            roles,
            r"^matrix/.*$",
            json!(["read", "write", "list"]),
        ),
    ] {
        let body = json!({ "name": name, "spiffeidPattern": id, "pathPattern": path, "permissions": permissions });
        admin(su, port, post(routes::POLICY, Action::Put, body), &[200]).await;
    }
    let encrypt = json!({ "plaintext": B64.encode(PLAINTEXT) });
    let ciphertext_json = admin(
        su,
        port,
        post(routes::CIPHER_ENCRYPT, Action::Put, encrypt),
        &[200],
    )
    .await
    .json();
    let stream = octets(routes::CIPHER_ENCRYPT.to_owned(), PLAINTEXT.to_vec());
    let ciphertext_stream = admin(su, port, stream, &[200]).await.body;

    let keeper = stack.keeper_ports[0];
    let shard = tests::wait_for(
        "keeper 1 to hold its shard",
        Duration::from_secs(20),
        || async {
            let answer = mtls::post(nexus, keeper, routes::KEEPER_SHARD, "{}")
                .await
                .ok()?;
            (answer.status == 200).then(|| answer.json())
        },
    )
    .await;
    let shard = serde_json::from_value(shard["shard"].clone()).expect("a shard of numbers");
    let keepers = stack
        .keeper_ports
        .iter()
        .map(|port| format!("https://127.0.0.1:{port}"))
        .collect();
    Fixtures {
        ciphertext_json,
        ciphertext_stream,
        shard,
        keepers,
    }
}

/// What the datastore holds of the matrix's secrets and policies.
#[derive(Debug, PartialEq)]
pub struct State {
    /// Every secret path.
    pub paths: Value,
    /// Every policy name.
    pub policy_names: BTreeSet<String>,
    /// Per caller: its secret's metadata and the values of each stored version (`null` if
    /// the secret is gone), and its policy (`null` if gone).
    pub secrets: BTreeMap<Caller, Value>,
    pub policies: BTreeMap<Caller, Value>,
}

pub async fn snapshot(su: &Arc<rustls::ClientConfig>, port: u16) -> State {
    let paths = admin(
        su,
        port,
        post(routes::SECRETS, Action::List, json!({})),
        &[200],
    )
    .await
    .json()["keys"]
        .clone();
    let list = admin(
        su,
        port,
        post(routes::POLICY, Action::List, json!({})),
        &[200],
    )
    .await
    .json();
    let policy_names = list["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    let mut secrets = BTreeMap::new();
    let mut policies = BTreeMap::new();
    for caller in CALLERS {
        let path = caller.secret_path();
        let meta = admin(
            su,
            port,
            post(
                routes::SECRETS_METADATA,
                Action::Get,
                json!({ "path": path }),
            ),
            &[200, 404],
        )
        .await;
        let secret = if meta.status == 404 {
            Value::Null
        } else {
            let meta = meta.json();
            let mut data = serde_json::Map::new();
            for version in meta["versions"].as_object().expect("versions").keys() {
                let n: u64 = version.parse().expect("version number");
                let get = json!({ "path": path, "version": n });
                let answer = admin(
                    su,
                    port,
                    post(routes::SECRETS, Action::Get, get),
                    &[200, 404],
                )
                .await;
                data.insert(
                    version.clone(),
                    if answer.status == 200 {
                        answer.json()["data"].clone()
                    } else {
                        Value::Null
                    },
                );
            }
            json!({ "metadata": meta, "data": data })
        };
        secrets.insert(caller, secret);
        let get = json!({ "id": caller.policy_name() });
        let policy = admin(
            su,
            port,
            post(routes::POLICY, Action::Get, get),
            &[200, 404],
        )
        .await;
        policies.insert(
            caller,
            if policy.status == 200 {
                policy.json()
            } else {
                Value::Null
            },
        );
    }
    State {
        paths,
        policy_names,
        secrets,
        policies,
    }
}

/// Whether the table lets `caller` do all, or none, of `endpoints`.
pub fn allowed(caller: Caller, endpoints: &[(&str, Action)]) -> Option<bool> {
    let cells: Vec<bool> = endpoints
        .iter()
        .map(|(route, action)| {
            let (_, _, cells) = NEXUS_MATRIX
                .iter()
                .find(|(r, a, _)| r == route && a == action)
                .expect("a row");
            cells[caller.column()] == OK
        })
        .collect();
    if cells.iter().all(|c| *c) {
        Some(true)
    } else if cells.iter().all(|c| !*c) {
        Some(false)
    } else {
        None
    }
}

pub const SECRET_WRITES: [(&str, Action); 7] = [
    (routes::SECRETS, Action::Put),
    (routes::SECRETS, Action::Delete),
    (routes::SECRETS, Action::Undelete),
    (routes::SECRETS, Action::Destroy),
    (routes::SECRETS, Action::Patch),
    (routes::SECRETS_METADATA, Action::Put),
    (routes::SECRETS_METADATA, Action::Delete),
];
pub const POLICY_WRITES: [(&str, Action); 2] = [
    (routes::POLICY, Action::Put),
    (routes::POLICY, Action::Delete),
];

/// The datastore after the matrix holds what the allowed writes made, and nothing else.
pub fn check_state(before: &State, after: &State) {
    // Each caller allowed every secret write deleted its secret whole, last; no other path
    // came or went.
    let deleted: Vec<String> = CALLERS
        .iter()
        .filter(|c| allowed(**c, &SECRET_WRITES) == Some(true))
        .map(|c| c.secret_path())
        .collect();
    let expected_paths: Vec<&Value> = before
        .paths
        .as_array()
        .expect("paths")
        .iter()
        .filter(|p| !deleted.iter().any(|d| p.as_str() == Some(d.as_str())))
        .collect();
    assert_eq!(
        after
            .paths
            .as_array()
            .expect("paths")
            .iter()
            .collect::<Vec<_>>(),
        expected_paths,
        "the matrix added or removed other secret paths"
    );
    let mut policy_names = before.policy_names.clone();
    for caller in CALLERS {
        let secret = &after.secrets[&caller];
        match allowed(caller, &SECRET_WRITES) {
            Some(false) => assert_eq!(
                secret, &before.secrets[&caller],
                "{caller:?} was refused every write, yet its secret changed"
            ),
            Some(true) => {
                // Put made version 3, delete + undelete left version 1, destroy took
                // version 2, patch made version 4; the metadata delete then took it all.
                assert_eq!(secret, &Value::Null, "{caller:?}'s secret: {secret}");
            }
            None => {
                panic!("{caller:?} may do some secret writes but not all: say here what it leaves")
            }
        }
        let policy = &after.policies[&caller];
        match allowed(caller, &POLICY_WRITES) {
            Some(false) => assert_eq!(
                policy, &before.policies[&caller],
                "{caller:?} was refused every policy write, yet its policy changed"
            ),
            Some(true) => {
                assert_eq!(policy, &Value::Null, "{caller:?} deleted its policy last");
                policy_names.remove(&caller.policy_name());
            }
            None => {
                panic!("{caller:?} may do some policy writes but not all: say here what it leaves")
            }
        }
    }
    assert_eq!(
        after.policy_names, policy_names,
        "policies besides the matrix's changed"
    );
}
