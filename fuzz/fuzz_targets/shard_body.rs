//! Keeper shard bodies (`nexus_api::model::ShardBody::parse`): what a keeper reads from
//! `POST /v1/store/contribute` and what Nexus reads from a keeper's `/v1/store/shard` answer.
//!
//! Properties:
//! - an accepted body is a JSON object whose `shard` is an array of exactly 32 numbers from 0
//!   to 255, and the shard is those numbers; written back as Nexus sends it, it reads back
//!   equal;
//! - refusals never depend on the shard's bytes: the same body with every byte-sized number
//!   of its `shard` array replaced by another of the same length gets the very same message,
//!   so no shard byte can reach an error or a log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus_api::model::{SHARD_LEN, ShardBody};
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let parsed = ShardBody::parse(body);
    if let Ok(parsed) = &parsed {
        let shard = &parsed.value;
        // serde_json skips an ignored field without decoding its escapes, so a body whose
        // unknown field holds a lone surrogate (`"\udc00"`) is a shard body but not a `Value`.
        if let Ok(doc) = serde_json::from_slice::<Value>(body) {
            let numbers: Vec<u64> = doc["shard"]
                .as_array()
                .expect("shard is an array")
                .iter()
                .map(|n| n.as_u64().expect("of whole numbers"))
                .collect();
            assert_eq!(numbers.len(), SHARD_LEN);
            assert!(
                numbers
                    .iter()
                    .zip(shard.iter())
                    .all(|(n, b)| *n == u64::from(*b))
            );
        }
        let written = serde_json::to_vec(&ShardBody {
            shard: shard.to_vec(),
            generation: parsed.generation,
        })
        .expect("writes");
        let read_back = ShardBody::parse(&written).expect("reads back");
        assert_eq!(read_back.value.as_slice(), shard.as_slice());
        assert_eq!(read_back.generation, parsed.generation);
    }

    // The same body with other shard bytes: re-serialised so that both have one layout.
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok(canonical) = serde_json::to_vec(&doc) else {
        return;
    };
    let Some(values) = doc.get_mut("shard").and_then(Value::as_array_mut) else {
        return;
    };
    for value in values.iter_mut() {
        if let Some(n) = value.as_u64().filter(|n| *n <= 255) {
            *value = Value::from(other_of_same_length(n));
        }
    }
    let other = serde_json::to_vec(&doc).expect("writes");
    let answer = |bytes: &[u8]| ShardBody::parse(bytes).map(drop).map_err(|e| e.to_string());
    assert_eq!(
        answer(&canonical),
        answer(&other),
        "the answer depends on shard bytes"
    );
});

/// Another byte written with as many digits as `n`.
fn other_of_same_length(n: u64) -> u64 {
    match n {
        0..=9 => (n + 1) % 10,
        10..=99 => 10 + (n - 10 + 1) % 90,
        _ => 100 + (n - 100 + 1) % 156,
    }
}
