//! `nexus::secrets::SecretPath::parse`, which every secret route applies to the body's path.
//!
//! Properties: an accepted path is kept exactly as given, re-parses, and keeps the rules
//! (1 to 500 bytes, only SPIKE's path characters, no `..` segment); `FromStr` agrees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::secrets::{MAX_PATH_LEN, SecretPath};

fuzz_target!(|path: &str| {
    let parsed = SecretPath::parse(path);
    assert_eq!(
        parsed,
        path.parse::<SecretPath>(),
        "FromStr agrees with parse"
    );
    let Ok(parsed) = parsed else {
        return;
    };
    assert_eq!(parsed.as_str(), path);
    assert_eq!(parsed.to_string(), path);
    assert_eq!(SecretPath::parse(parsed.as_str()), Ok(parsed.clone()));
    assert!(!path.is_empty() && path.len() <= MAX_PATH_LEN);
    assert!(path.split('/').all(|segment| segment != ".."));
    assert!(
        path.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/()?+*|[]{}\\".contains(c))
    );
});
