//! Recovery shards as operators handle them (`pilot::shard::RecoveryShard`, the text
//! `spike:<id>:<64 hex digits>` in recovery files and on `spike operator restore`'s stdin).
//!
//! Properties: an accepted shard has an id from 1 to 255, writes back as
//! `spike:<id>:<lowercase hex>\n`, and that line parses to the same shard; a refusal's
//! message never holds a run of 8 or more hex digits of the input (no shard material in
//! errors).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot::shard::RecoveryShard;

fuzz_target!(|text: &str| {
    let shard = match text.parse::<RecoveryShard>() {
        Ok(shard) => shard,
        Err(e) => {
            let message = e.to_string();
            for run in text.split(|c: char| !c.is_ascii_hexdigit()) {
                assert!(run.len() < 8 || !message.contains(run), "{message}");
            }
            return;
        }
    };
    assert!(shard.id() >= 1);
    let line = shard.to_line();
    let hex: String = shard.bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(*line, format!("spike:{}:{hex}\n", shard.id()));
    let back: RecoveryShard = line.parse().expect("its own line parses");
    assert_eq!(back.id(), shard.id());
    assert_eq!(back.bytes(), shard.bytes());
});
