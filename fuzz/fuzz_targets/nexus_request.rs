//! Nexus request bodies: `nexus::api::parse_request` for every route and action of the
//! authorisation table, as Nexus reads and checks them before touching any state.
//!
//! Input: one byte choosing the row of `nexus::authz::TABLE` (past the end: a route with an
//! action it does not take, or an unknown route), then the body.
//!
//! Properties beyond "no panic":
//! - every refusal has a message and a client error code (4xx), never a server error;
//! - refusals never depend on secret values: the same body with every secret value
//!   (`values` of a secret, the base64 `plaintext` of the cipher) replaced by a different string of the
//!   same length gets the very same answer, so no value can leak into an error message;
//! - a secret path that was accepted (by every action but list, which takes none) re-parses as
//!   a `SecretPath`.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use nexus::api::parse_request;
use nexus::authz::TABLE;
use nexus::secrets::SecretPath;
use nexus_api::routes::{self, Action};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (route, action) = match TABLE.get(usize::from(selector)) {
        Some(rule) => (rule.route, rule.action),
        None => match usize::from(selector) - TABLE.len() {
            0 => (routes::STATUS, Some(Action::Destroy)),
            1 => (routes::ROTATE, Some(Action::List)),
            2 => (routes::SECRETS_METADATA, Some(Action::Undelete)),
            _ => ("/v1/no/such/route", None),
        },
    };
    let answer = parse_request(route, action, body);
    if let Err(e) = &answer {
        assert!(!e.message.is_empty(), "{route}: refusal without a message");
        let status = e.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{route} {action:?}: status {status} for a bad body: {}",
            e.message
        );
    }
    if TABLE.iter().all(|r| r.route != route) {
        assert!(answer.is_err(), "{route} is in no row of the table");
    }

    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    // A list takes no path (one in its body is ignored); every other secrets action parses it.
    if answer.is_ok()
        && route == routes::SECRETS
        && action != Some(Action::List)
        && let Some(Value::String(path)) = json.get("path")
    {
        assert!(SecretPath::parse(path).is_ok(), "accepted path re-parses");
    }
    // The differential on secret values, on the body as serde_json writes it back.
    let original = serde_json::to_vec(&json).expect("a Value serialises");
    if !replace_secret_values(&mut json) {
        return;
    }
    let replaced = serde_json::to_vec(&json).expect("a Value serialises");
    let before = parse_request(route, action, &original).map_err(|e| (e.code, e.message));
    let after = parse_request(route, action, &replaced).map_err(|e| (e.code, e.message));
    assert_eq!(before, after, "the answer depends on a secret value");
});

/// Replaces the secret values in a request body; false if it holds none.
fn replace_secret_values(json: &mut Value) -> bool {
    let Value::Object(fields) = json else {
        return false;
    };
    let mut replaced = false;
    if let Some(Value::Object(values)) = fields.get_mut("values") {
        for value in values.values_mut() {
            if let Value::String(s) = value {
                *s = other_of_same_length(s);
                replaced = true;
            }
        }
    }
    if let Some(Value::String(plaintext)) = fields.get_mut("plaintext")
        && let Ok(bytes) = STANDARD.decode(&*plaintext)
    {
        let other: Vec<u8> = bytes.iter().map(|b| b ^ 0x55).collect();
        *plaintext = STANDARD.encode(other);
        replaced = true;
    }
    replaced
}

/// A string of the same length in bytes, in characters and as escaped JSON, differing in
/// every character JSON does not escape (so an error's column stays the same).
fn other_of_same_length(s: &str) -> String {
    s.chars()
        .map(|c| match (c.len_utf8(), c) {
            (_, '"' | '\\') => c,
            (_, c) if c < ' ' => c,
            (1, 'x') => 'y',
            (1, _) => 'x',
            (2, 'é') => 'è',
            (2, _) => 'é',
            (3, '€') => '₤',
            (3, _) => '€',
            (_, '😀') => '😁',
            (_, _) => '😀',
        })
        .collect()
}
