//! What the user typed, turned into typed values before anything goes over the network:
//! `key=value` pairs (with values from stdin or files, so they stay out of shell history),
//! version lists such as `1,2,0`, and y/N confirmations.
//!
//! Errors here never quote a value that came from stdin or a file.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nexus_api::model::Values;

/// Why the input was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// An argument that should be `key=value` has no `=`.
    #[error(
        "`{0}` is not a key=value pair (use key=value, key=- to read the value from stdin, or key=@FILE); nothing was written"
    )]
    MissingEquals(String),
    /// `=value`: the key is empty.
    #[error("pair {0} has an empty key; nothing was written")]
    EmptyKey(usize),
    /// The same key twice.
    #[error("key `{0}` is given more than once; nothing was written")]
    DuplicateKey(String),
    /// More than one `key=-`.
    #[error("only one key may read its value from stdin (`{first}=-` and `{second}=-`)")]
    StdinTwice {
        /// The first key reading stdin.
        first: String,
        /// The second one.
        second: String,
    },
    /// Stdin or a file could not be read, or is not UTF-8 text.
    #[error("cannot read the value of `{key}` from {from}: {reason}")]
    Read {
        /// The key whose value was being read.
        key: String,
        /// `stdin` or the file's path.
        from: String,
        /// The I/O error, or that it is not UTF-8.
        reason: String,
    },
    /// A version list item is not a number.
    #[error("`{0}` is not a version number (expected a comma-separated list such as 1,2,0)")]
    BadVersion(String),
    /// An empty version list.
    #[error("no versions given (expected a comma-separated list such as 1,2,0)")]
    NoVersions,
    /// A file (policy YAML) could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The user declined, or no terminal was there to ask.
    #[error("{0}")]
    NotConfirmed(String),
    /// Two `spike exec --secret` bindings set the same variable.
    #[error("environment variable {0} is set by more than one --secret; nothing was run")]
    DuplicateEnv(String),
}

/// Where a pair's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// Given on the command line.
    Inline(String),
    /// `key=-`: read from stdin, minus one trailing newline.
    Stdin,
    /// `key=@FILE`: the file's exact content.
    File(PathBuf),
}

/// One `key=...` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key.
    pub key: String,
    /// Where its value comes from.
    pub source: ValueSource,
}

/// Parses `key=value` arguments. Refuses a pair without `=`, an empty key, a duplicate key
/// and more than one `key=-`: nothing is written unless every pair is right.
pub fn parse_pairs(args: &[String]) -> Result<Vec<Pair>, InputError> {
    let mut pairs = Vec::with_capacity(args.len());
    let mut keys = BTreeSet::new();
    let mut stdin_key: Option<String> = None;
    for (index, arg) in args.iter().enumerate() {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(InputError::MissingEquals(arg.clone()));
        };
        if key.is_empty() {
            return Err(InputError::EmptyKey(index + 1));
        }
        if !keys.insert(key.to_owned()) {
            return Err(InputError::DuplicateKey(key.to_owned()));
        }
        let source = match value {
            "-" => {
                if let Some(first) = &stdin_key {
                    return Err(InputError::StdinTwice {
                        first: first.clone(),
                        second: key.to_owned(),
                    });
                }
                stdin_key = Some(key.to_owned());
                ValueSource::Stdin
            }
            _ => match value.strip_prefix('@') {
                Some(file) => ValueSource::File(PathBuf::from(file)),
                None => ValueSource::Inline(value.to_owned()),
            },
        };
        pairs.push(Pair {
            key: key.to_owned(),
            source,
        });
    }
    Ok(pairs)
}

/// Reads every value: inline ones as given, `key=-` through `read_stdin` (see [`read_piped`]
/// and [`read_hidden`]), `key=@FILE` byte for byte.
pub fn read_values(
    pairs: Vec<Pair>,
    mut read_stdin: impl FnMut(&str) -> Result<String, InputError>,
) -> Result<Values, InputError> {
    let mut values = Values::new();
    for Pair { key, source } in pairs {
        let value = match source {
            ValueSource::Inline(value) => value,
            ValueSource::Stdin => read_stdin(&key)?,
            ValueSource::File(path) => {
                let from = path.display().to_string();
                let mut file = std::fs::File::open(&path).map_err(|e| InputError::Read {
                    key: key.clone(),
                    from: from.clone(),
                    reason: e.to_string(),
                })?;
                read_text(&key, &from, &mut file)?
            }
        };
        values.insert(key, value);
    }
    Ok(values)
}

/// The value of `key` from a piped stdin: everything up to end of input, minus one trailing
/// `\n`, so `echo secret | spike secret put p k=-` stores `secret`.
pub fn read_piped(key: &str, stdin: &mut impl Read) -> Result<String, InputError> {
    let mut value = read_text(key, "stdin", stdin)?;
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

/// The value of `key` typed on the terminal: one line, not echoed.
pub fn read_hidden(key: &str) -> Result<String, InputError> {
    let mut line = String::new();
    read_hidden_line(&format!("Value for `{key}` (not echoed): "), &mut line).map_err(|e| {
        InputError::Read {
            key: key.to_owned(),
            from: "the terminal".into(),
            reason: e.to_string(),
        }
    })?;
    Ok(line)
}

/// Shows `prompt` on stderr and reads one line from the terminal on stdin into `line`
/// without echo, minus its newline. The caller owns `line`, so it can be a zeroizing buffer
/// sized up front.
pub fn read_hidden_line(prompt: &str, line: &mut String) -> std::io::Result<()> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{prompt}");
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let read = stdin.lock().read_line(line);
    // Restore echo before anything else, even if reading failed.
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    read?;
    restored?;
    if line.ends_with('\n') {
        line.pop();
    }
    Ok(())
}

fn read_text(key: &str, from: &str, reader: &mut impl Read) -> Result<String, InputError> {
    let mut bytes = Vec::new();
    let error = |reason: String| InputError::Read {
        key: key.to_owned(),
        from: from.to_owned(),
        reason,
    };
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| error("it is not UTF-8 text".into()))
}

/// Reads a whole text file (`-`: stdin), for policy files.
pub fn read_file(path: &Path, stdin: &mut impl Read) -> Result<String, InputError> {
    let error = |reason: String| InputError::File {
        path: path.display().to_string(),
        reason,
    };
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        stdin
            .read_to_end(&mut bytes)
            .map_err(|e| error(e.to_string()))?;
    } else {
        bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    }
    String::from_utf8(bytes).map_err(|_| error("it is not UTF-8 text".into()))
}

/// A comma-separated list of versions, e.g. `1, 2,0` (0 names the current version). Order is
/// kept and repeats are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionList(pub Vec<u64>);

impl FromStr for VersionList {
    type Err = InputError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Err(InputError::NoVersions);
        }
        let mut versions = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let version: u64 = item
                .parse()
                .map_err(|_| InputError::BadVersion(item.to_owned()))?;
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        Ok(VersionList(versions))
    }
}

/// [`confirm`] at the terminal: the prompt on stderr, the answer from stdin.
pub fn confirm_at_terminal(question: &str) -> Result<(), InputError> {
    let stdin = std::io::stdin();
    confirm(
        question,
        stdin.is_terminal(),
        &mut stdin.lock(),
        &mut std::io::stderr(),
    )
}

/// Asks `question` with a `[y/N]` prompt on `prompt` and reads the answer from `answer`.
/// When stdin is not a terminal nobody can answer, so it refuses and says to pass `--yes`.
pub fn confirm(
    question: &str,
    is_terminal: bool,
    answer: &mut impl BufRead,
    prompt: &mut impl Write,
) -> Result<(), InputError> {
    if !is_terminal {
        return Err(InputError::NotConfirmed(format!(
            "{question} Pass --yes to confirm: stdin is not a terminal to ask on. Nothing was changed."
        )));
    }
    let declined = || InputError::NotConfirmed("Cancelled; nothing was changed.".into());
    write!(prompt, "{question} [y/N] ")
        .and_then(|()| prompt.flush())
        .map_err(|_| declined())?;
    let mut line = String::new();
    answer.read_line(&mut line).map_err(|_| declined())?;
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(declined()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pairs_parse_by_source() {
        let pairs = parse_pairs(&args(&[
            "user=app",
            "pw=-",
            "cert=@/tmp/c.pem",
            "eq=a=b",
            "e=",
        ]));
        assert_eq!(
            pairs,
            Ok(vec![
                Pair {
                    key: "user".into(),
                    source: ValueSource::Inline("app".into())
                },
                Pair {
                    key: "pw".into(),
                    source: ValueSource::Stdin
                },
                Pair {
                    key: "cert".into(),
                    source: ValueSource::File("/tmp/c.pem".into())
                },
                Pair {
                    key: "eq".into(),
                    source: ValueSource::Inline("a=b".into())
                },
                Pair {
                    key: "e".into(),
                    source: ValueSource::Inline(String::new())
                },
            ])
        );
    }

    #[test]
    fn bad_pairs_are_refused() {
        let missing = parse_pairs(&args(&["a=1", "novalue"]));
        assert_eq!(missing, Err(InputError::MissingEquals("novalue".into())));
        let text = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("`novalue`") && text.contains("nothing was written"));

        let empty = parse_pairs(&args(&["a=1", "=hunter2"]));
        assert_eq!(empty, Err(InputError::EmptyKey(2)));
        assert!(
            !empty
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("hunter2")
        );

        let dup = parse_pairs(&args(&["a=1", "b=2", "a=hunter2"]));
        assert_eq!(dup, Err(InputError::DuplicateKey("a".into())));
        assert!(
            !dup.err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("hunter2")
        );

        assert_eq!(
            parse_pairs(&args(&["a=-", "b=-"])),
            Err(InputError::StdinTwice {
                first: "a".into(),
                second: "b".into()
            })
        );
    }

    #[test]
    fn piped_stdin_loses_one_trailing_newline_files_lose_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("v.txt");
        std::fs::write(&file, "from-file\n\n").expect("write");
        let pairs = parse_pairs(&[
            "a=-".to_owned(),
            format!("b=@{}", file.display()),
            "c=inline".to_owned(),
        ])
        .expect("pairs");
        let mut stdin = &b"from-stdin\n\n"[..];
        let values = read_values(pairs, |k| read_piped(k, &mut stdin)).expect("values");
        assert_eq!(values["a"], "from-stdin\n");
        assert_eq!(values["b"], "from-file\n\n");
        assert_eq!(values["c"], "inline");

        let pairs = parse_pairs(&args(&["a=-"])).expect("pairs");
        let values =
            read_values(pairs, |k| read_piped(k, &mut &b"no-newline"[..])).expect("values");
        assert_eq!(values["a"], "no-newline");
    }

    #[test]
    fn unreadable_sources_name_the_key_not_the_value() {
        let pairs = parse_pairs(&args(&["k=@/nonexistent/secret"])).expect("pairs");
        let err = read_values(pairs, |k| read_piped(k, &mut &b""[..])).err();
        assert!(
            matches!(&err, Some(InputError::Read { key, from, .. }) if key == "k" && from == "/nonexistent/secret"),
            "{err:?}"
        );
        let pairs = parse_pairs(&args(&["k=-"])).expect("pairs");
        let err = read_values(pairs, |k| read_piped(k, &mut &[0xff, 0xfe][..])).err();
        assert!(
            matches!(&err, Some(InputError::Read { reason, .. }) if reason.contains("UTF-8")),
            "{err:?}"
        );
    }

    #[test]
    fn versions_parse() {
        let parse = |s: &str| s.parse::<VersionList>().map(|v| v.0);
        assert_eq!(parse("1,2,0"), Ok(vec![1, 2, 0]));
        assert_eq!(parse(" 3 , 1 ,3"), Ok(vec![3, 1]));
        assert_eq!(parse("7"), Ok(vec![7]));
        assert_eq!(parse("1,x"), Err(InputError::BadVersion("x".into())));
        assert_eq!(parse("1,,2"), Err(InputError::BadVersion(String::new())));
        assert_eq!(parse("-1"), Err(InputError::BadVersion("-1".into())));
        assert_eq!(parse("1.5"), Err(InputError::BadVersion("1.5".into())));
        assert_eq!(parse(" "), Err(InputError::NoVersions));
    }

    #[test]
    fn confirmation() {
        let mut prompt = Vec::new();
        assert!(confirm("Destroy?", true, &mut &b"y\n"[..], &mut prompt).is_ok());
        assert_eq!(String::from_utf8_lossy(&prompt), "Destroy? [y/N] ");
        assert!(confirm("Destroy?", true, &mut &b"YES\n"[..], &mut Vec::new()).is_ok());
        for answer in [&b"\n"[..], b"n\n", b"", b"yep\n"] {
            let refused = confirm("Destroy?", true, &mut &answer[..], &mut Vec::new());
            assert!(matches!(refused, Err(InputError::NotConfirmed(_))));
        }
        let mut prompt = Vec::new();
        let refused = confirm("Destroy?", false, &mut &b"y\n"[..], &mut prompt);
        let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("--yes"), "{text}");
        assert!(prompt.is_empty(), "no prompt without a terminal");
    }
}
