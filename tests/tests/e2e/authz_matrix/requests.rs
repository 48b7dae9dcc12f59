//! What each cell sends, and what a 200 answer to it must hold.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use nexus_api::routes::{self, Action};
use serde_json::{Value, json};
use tests::mtls::{Answer, Request};

use super::callers::{CALLERS, Caller, Caller::*, visible_paths};

/// What the cipher rows encrypt, and what their ciphertexts decrypt to.
pub const PLAINTEXT: &[u8] = b"the matrix's plaintext";

/// What the matrix's requests refer to, made before it runs.
pub struct Fixtures {
    /// A ciphertext of [`PLAINTEXT`] in JSON mode and in stream mode.
    pub ciphertext_json: Value,
    pub ciphertext_stream: Vec<u8>,
    /// The shard keeper 1 holds.
    pub shard: Vec<u8>,
    /// The keepers' URLs (the rekey row rekeys to the same keepers, 3 of 3).
    pub keepers: Vec<String>,
}

/// The requests one cell sends (several where the endpoint has several modes).
pub fn nexus_requests(route: &str, action: Action, caller: Caller, fx: &Fixtures) -> Vec<Request> {
    let target = action.url(route);
    let path = caller.secret_path();
    let one = |body: Value| vec![Request::post_json(target.clone(), &body)];
    match (route, action) {
        (routes::SECRETS, Action::Put) => {
            one(json!({ "path": path, "values": { "v": format!("put-by-{}", caller.slug()) } }))
        }
        (routes::SECRETS, Action::Get) => one(json!({ "path": path, "version": 1 })),
        (routes::SECRETS_METADATA, Action::Get) => one(json!({ "path": path })),
        (routes::SECRETS, Action::Delete | Action::Undelete) => {
            one(json!({ "path": path, "versions": [1] }))
        }
        (routes::SECRETS, Action::Destroy) => one(json!({ "path": path, "versions": [2] })),
        (routes::SECRETS, Action::Patch) => {
            one(json!({ "path": path, "values": { "p": format!("patched-by-{}", caller.slug()) } }))
        }
        (routes::SECRETS_METADATA, Action::Put) => {
            one(json!({ "path": path, "customMetadata": { "by": caller.slug() } }))
        }
        (routes::SECRETS_METADATA, Action::Delete) => one(json!({ "path": path })),
        (routes::SECRETS | routes::POLICY, Action::List) => one(json!({})),
        (routes::POLICY, Action::Put) => one(policy_body(caller, "changed")),
        (routes::POLICY, Action::Get | Action::Delete) => {
            one(json!({ "id": caller.policy_name() }))
        }
        (routes::RECOVER | routes::ROTATE | routes::SEAL | routes::UNSEAL, Action::Put) => {
            one(json!({}))
        }
        (routes::REKEY, Action::Put) => one(json!({ "keepers": fx.keepers, "threshold": 3 })),
        (routes::RESTORE, Action::Put) => {
            one(json!({ "id": 1, "shard": (1..=32).collect::<Vec<u8>>() }))
        }
        (routes::CIPHER_ENCRYPT, Action::Put) => vec![
            Request::post_json(
                target.clone(),
                &json!({ "plaintext": B64.encode(PLAINTEXT) }),
            ),
            octets(target, PLAINTEXT.to_vec()),
        ],
        (routes::CIPHER_DECRYPT, Action::Put) => vec![
            Request::post_json(target.clone(), &fx.ciphertext_json),
            octets(target, fx.ciphertext_stream.clone()),
        ],
        (routes::STATUS, Action::Put) => vec![
            Request::post_json(target.clone(), &json!({})),
            Request {
                method: "GET",
                target,
                content_type: "application/json",
                body: Vec::new(),
            },
        ],
        _ => panic!("no request for {target}: say here what the matrix sends to it"),
    }
}

pub fn keeper_requests(route: &str, caller: Caller, fx: &Fixtures) -> Vec<Request> {
    match route {
        routes::KEEPER_HEALTH => vec![Request {
            method: "GET",
            target: route.to_owned(),
            content_type: "application/json",
            body: Vec::new(),
        }],
        routes::KEEPER_SHARD => vec![Request::post_json(route, &json!({}))],
        // Generation 0, which the keeper holds: it keeps its shard.
        routes::KEEPER_RETAIN => vec![Request::post_json(route, &json!({ "generation": 0 }))],
        routes::KEEPER_CONTRIBUTE => {
            let shard = if caller == Nexus {
                fx.shard.clone()
            } else {
                vec![7; 32]
            };
            vec![Request::post_json(route, &json!({ "shard": shard }))]
        }
        _ => panic!("no request for keeper route {route}: say here what the matrix sends"),
    }
}

pub fn octets(target: String, body: Vec<u8>) -> Request {
    Request {
        method: "POST",
        target,
        content_type: "application/octet-stream",
        body,
    }
}

pub fn policy_body(caller: Caller, variant: &str) -> Value {
    let slug = caller.slug();
    json!({
        "name": caller.policy_name(),
        "spiffeidPattern": format!("^spiffe://example\\.org/matrix/{slug}$"),
        "pathPattern": format!("^matrix/{slug}/{variant}$"),
        "permissions": ["read"],
    })
}

/// What a 200 answer must hold, beyond its status.
pub fn check_answer(
    route: &str,
    action: Action,
    caller: Caller,
    request: &Request,
    answer: &Answer,
) -> Result<(), String> {
    let stream = request.content_type == "application/octet-stream";
    let body = if stream { Value::Null } else { answer.json() };
    let ok = match (route, action) {
        (routes::SECRETS, Action::Put) => body["version"] == 3,
        (routes::SECRETS, Action::Patch) => body["version"] == 4,
        (routes::SECRETS, Action::Get) => body["data"]["v"] == "fixture-1",
        (routes::SECRETS_METADATA, Action::Get) => body["versions"].get("1").is_some(),
        (routes::SECRETS, Action::List) => {
            let keys: BTreeSet<String> = body["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            if caller == Superuser {
                CALLERS.iter().all(|c| keys.contains(&c.secret_path()))
            } else {
                keys == visible_paths(caller).into_iter().collect()
            }
        }
        (routes::POLICY, Action::Get) => body["name"] == caller.policy_name(),
        (routes::POLICY, Action::List) => {
            let names: BTreeSet<&str> = body["policies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            CALLERS
                .iter()
                .all(|c| names.contains(c.policy_name().as_str()))
        }
        (routes::CIPHER_ENCRYPT, _) if stream => {
            answer.body.first() == Some(&1) && answer.body.len() == 1 + 12 + PLAINTEXT.len() + 16
        }
        (routes::CIPHER_ENCRYPT, _) => {
            body["version"] == 1
                && B64
                    .decode(body["nonce"].as_str().unwrap_or_default())
                    .map(|n| n.len())
                    == Ok(12)
        }
        (routes::CIPHER_DECRYPT, _) if stream => answer.body == PLAINTEXT,
        (routes::CIPHER_DECRYPT, _) => {
            B64.decode(body["plaintext"].as_str().unwrap_or_default())
                .as_deref()
                == Ok(PLAINTEXT)
        }
        (routes::RECOVER, _) => body["shards"].as_object().is_some_and(|shards| {
            shards.len() == 3
                && shards
                    .values()
                    .all(|s| s.as_array().map(Vec::len) == Some(32))
        }),
        (routes::STATUS | routes::UNSEAL, _) => body["state"] == "ready",
        (routes::SEAL, _) => {
            body["state"] == "sealed" && body["operatorSeal"]["by"] == tests::secrets::SUPERUSER_ID
        }
        (routes::ROTATE, _) => body["rewrapped"].as_u64().is_some_and(|n| n > 0),
        (routes::REKEY, _) => {
            body["generation"] == 1
                && body["keepers"] == 3
                && body["threshold"] == 3
                && body["recoveryShardsStale"] == true
        }
        _ => body.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected 200 answer: {}", answer.text()))
    }
}

pub fn check_keeper_answer(route: &str, answer: &Answer, fx: &Fixtures) -> Result<(), String> {
    let body = answer.json();
    let ok = match route {
        routes::KEEPER_HEALTH => body["hasShard"] == true,
        routes::KEEPER_SHARD => body["shard"] == json!(fx.shard),
        routes::KEEPER_RETAIN => body["generations"] == json!([0]),
        _ => body.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected 200 answer: {}", answer.text()))
    }
}
