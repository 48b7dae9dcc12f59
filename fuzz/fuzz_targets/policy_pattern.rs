//! The policy pattern compiler in `policies` (`Policy::compile`), on a SPIFFE ID pattern and
//! a path pattern, and the compiled matchers on a candidate ID and path.
//!
//! Input: pattern, candidate, separated by the first NUL (patterns cannot hold one usefully).
//!
//! Properties:
//! - patterns over 500 bytes are refused; an accepted pattern also compiles on its own, so no
//!   pattern escapes the anchoring (`a)|(.*` is refused, not wrapped into `^(?:a)|(.*)$`);
//! - anchored: whatever the compiled policy matches, the pattern matches whole, as the regex
//!   crate's own `\A(?:pattern)\z` says (no inline flag or alternation reaches past the
//!   anchors);
//! - the SPIFFE ID matcher and the path matcher give the same answer for the same pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policies::{MAX_PATTERN_LEN, Permission, Policy, PolicyError};
use regex::Regex;

fuzz_target!(|data: &str| {
    let (pattern, candidate) = data.split_once('\0').unwrap_or((data, ""));
    let policy = Policy::new("p", pattern, pattern, [Permission::Read]);
    let compiled = match policy.compile() {
        Ok(compiled) => compiled,
        Err(PolicyError::PatternTooLong { len, .. }) => {
            assert_eq!(len, pattern.len());
            assert!(len > MAX_PATTERN_LEN);
            return;
        }
        Err(_) => return,
    };
    assert!(!pattern.is_empty() && pattern.len() <= MAX_PATTERN_LEN);
    let plain = Regex::new(pattern).expect("an accepted pattern compiles on its own");
    let matched = compiled.matches_caller(candidate);
    assert_eq!(
        matched,
        compiled.matches_path(candidate),
        "same pattern, same answer"
    );
    if !matched {
        return;
    }
    assert!(plain.is_match(candidate), "anchored match implies a match");
    // Anchoring, checked against the regex crate's own notion of a whole match: the
    // pattern wrapped in \A…\z (independent of how `policies` anchors).
    let whole = Regex::new(&format!(r"\A(?:{pattern})\z")).expect("compiles");
    assert!(
        whole.is_match(candidate),
        "a match covers the whole candidate"
    );
});
