//! `nexus::policy::PolicyName::parse`, applied to every policy name a request names.
//!
//! Properties: it agrees with `policies::validate_name`; an accepted name is kept exactly,
//! re-parses, and holds 1 to 250 characters of `[a-zA-Z0-9 _-]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexus::policy::PolicyName;
use policies::MAX_NAME_LEN;

fuzz_target!(|name: &str| {
    let parsed = PolicyName::parse(name);
    assert_eq!(
        parsed.as_ref().map(drop).map_err(Clone::clone),
        policies::validate_name(name)
    );
    let Ok(parsed) = parsed else {
        return;
    };
    assert_eq!(parsed.as_str(), name);
    assert_eq!(parsed.to_string(), name);
    assert_eq!(PolicyName::parse(parsed.as_str()), Ok(parsed.clone()));
    let len = name.chars().count();
    assert!((1..=MAX_NAME_LEN).contains(&len));
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_' || c == '-')
    );
});
