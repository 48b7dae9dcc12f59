//! SPIRE-style command lines for `spire-server` and `spire-agent`.
//!
//! SPIRE's CLIs take long flags with one dash (`-spiffeID`, `-parentID`); clap only knows
//! `--long`. [`normalize`] rewrites a single-dash word of two or more characters into its
//! double-dash form before clap sees it, so both `-spiffeID x` and `--spiffeID x` work.

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
    use super::normalize;

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
