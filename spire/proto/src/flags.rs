//! SPIRE-style command lines for `spire-server` and `spire-agent`.
//!
//! SPIRE's CLIs take long flags with one dash (`-spiffeID`, `-parentID`); clap only knows
//! `--long`. [`normalize`] rewrites a single-dash word of two or more characters into its
//! double-dash form before clap sees it, so both `-spiffeID x` and `--spiffeID x` work.
//! SPIFFE ID flags parse with [`canonical_spiffe_id`].

use spiffe::{SpiffeId, TrustDomain};

/// Parses a SPIFFE ID, accepting only its canonical spelling. The `spiffe` crate accepts an
/// upper-case trust domain and lowercases it, but SPIFFE-ID §2.1 says the trust domain MUST be
/// lowercase; accepting a second spelling would let two strings name one identity.
pub fn canonical_spiffe_id(raw: &str) -> Result<SpiffeId, String> {
    let id = SpiffeId::new(raw).map_err(|e| e.to_string())?;
    if id.to_string() != raw {
        return Err("not in canonical form (the trust domain must be lowercase)".to_owned());
    }
    Ok(id)
}

/// Parses a trust domain given as `example.org` or `spiffe://example.org` (as the `spiffe`
/// crate and SPIRE accept it), accepting only the canonical lowercase name: the `spiffe` crate
/// lowercases `Example.org`, which SPIFFE-ID §2.1 forbids and go-spiffe refuses, and a second
/// spelling stored verbatim (an entry's `federatesWith`) would never match the bundle's.
pub fn canonical_trust_domain(raw: &str) -> Result<TrustDomain, String> {
    let td = TrustDomain::new(raw).map_err(|e| e.to_string())?;
    if td.as_str() != raw.strip_prefix("spiffe://").unwrap_or(raw) {
        return Err(format!(
            "not in canonical form (the trust domain must be lowercase: {td})"
        ));
    }
    Ok(td)
}

/// Rewrites `-name[=value]` to `--name[=value]`; leaves `-x`, `--x`, `-` and values alone.
/// Everything after a bare `--` is passed through untouched.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let is_single_dash_word = arg.len() > 2
            && arg.starts_with('-')
            && !arg.starts_with("--")
            && arg[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
        if is_single_dash_word {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{canonical_spiffe_id, canonical_trust_domain, normalize};

    #[test]
    fn trust_domains_must_be_canonical() {
        for good in ["example.org", "spiffe://example.org", "a-b_c.1"] {
            assert_eq!(
                canonical_trust_domain(good).map(|td| td.to_string()),
                Ok(good.trim_start_matches("spiffe://").to_owned())
            );
        }
        for bad in [
            "Example.org",
            "spiffe://EXAMPLE.org",
            "SPIFFE://example.org",
            "spiffe://example.org/path",
            "",
        ] {
            assert!(canonical_trust_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spiffe_ids_must_be_canonical() {
        assert!(canonical_spiffe_id("spiffe://example.org/a").is_ok());
        for bad in [
            "spiffe://Example.org/a",
            "spiffe://example.org/a//b",
            "http://x/a",
            "",
        ] {
            assert!(canonical_spiffe_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrites_single_dash_words_only() {
        let args = [
            "prog",
            "-spiffeID",
            "spiffe://a/b",
            "-t",
            "--ttl",
            "5",
            "-x509SVIDTTL=5",
            "-1",
        ];
        let got = normalize(args.iter().map(|s| s.to_string()));
        assert_eq!(
            got,
            [
                "prog",
                "--spiffeID",
                "spiffe://a/b",
                "-t",
                "--ttl",
                "5",
                "--x509SVIDTTL=5",
                "-1"
            ]
        );
    }
}
