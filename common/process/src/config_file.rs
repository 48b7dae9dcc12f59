//! A TOML configuration file under a clap command line.
//!
//! Every key of the file is the name of a long option in snake case (`shamir_threshold` for
//! `--shamir-threshold`), so `--help` documents the file too. The file's values become the
//! options' defaults, which gives the usual precedence: flag, then environment variable, then
//! file, then built-in default. Each value is checked with the option's own parser before
//! anything runs, so a bad file is one error naming the file and the key.
//!
//! clap has no config-file support and the crates that add it (figment, config) would make
//! every option's type, default and documentation live twice; this module keeps clap the one
//! description of the options.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

/// The id of the option that names the file (`--config FILE`, and its environment variable).
pub const CONFIG_OPTION: &str = "config";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that is no option of this program.
    #[error("config file {path}: unknown key `{key}` (known keys: {known})")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The keys this program reads.
        known: String,
    },
    /// A value the option does not accept.
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The command line itself is wrong (or `--help`/`--version` was asked for).
    #[error(transparent)]
    CommandLine(#[from] clap::Error),
}

impl ConfigFileError {
    /// Prints the error (or the help text) and exits: 0 for `--help`/`--version`, 2 otherwise,
    /// as clap does for command-line errors.
    pub fn exit(self) -> ! {
        match self {
            ConfigFileError::CommandLine(e) => e.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(2)
            }
        }
    }
}

/// Parses `T` from this process's arguments and environment with the config file's values as
/// defaults; exits with a clear message when anything is wrong.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`] from the given arguments (the first is the program name).
pub fn try_parse_from<T, I, S>(args: I) -> Result<T, ConfigFileError>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = T::command();
    if let Some(path) = config_path(&command, &args) {
        command = with_file_defaults(command, &path)?;
    }
    let matches = command.try_get_matches_from_mut(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The file named by `--config FILE`, `--config=FILE` (before any `--`) or the option's
/// environment variable; an empty value means none.
fn config_path(command: &Command, args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1).take_while(|a| *a != "--");
    while let Some(arg) = rest.next() {
        if arg == "--config" {
            return rest.next().filter(|v| !v.is_empty()).map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return (!value.is_empty()).then(|| PathBuf::from(value));
        }
    }
    let option = command
        .get_arguments()
        .find(|a| a.get_id() == CONFIG_OPTION)?;
    std::env::var_os(option.get_env()?)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The options a file may set: every long option except `--config`, `--help`, `--version`.
fn settable(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && arg.get_id() != CONFIG_OPTION
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

fn with_file_defaults(mut command: Command, path: &Path) -> Result<Command, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigFileError::Syntax {
        path: path.to_owned(),
        message: e.message().to_owned() + &location(&text, e.span()),
    })?;
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && settable(a))
        else {
            let mut known: Vec<String> = command
                .get_arguments()
                .filter(|a| settable(a))
                .map(|a| a.get_id().to_string())
                .collect();
            known.sort();
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key,
                known: known.join(", "),
            });
        };
        let invalid = |message: String| ConfigFileError::Invalid {
            path: path.to_owned(),
            key: key.clone(),
            message,
        };
        let many =
            matches!(arg.get_action(), ArgAction::Append) || arg.get_value_delimiter().is_some();
        let values = match value {
            toml::Value::Array(items) if many => items
                .into_iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("expected a list of strings or numbers".into()))?,
            toml::Value::Array(_) => return Err(invalid("expected one value, not a list".into())),
            other => vec![
                scalar(other)
                    .ok_or_else(|| invalid("expected a string, number or boolean".into()))?,
            ],
        };
        for value in &values {
            check(arg, value).map_err(invalid)?;
        }
        command = command.mut_arg(id, |a| a.default_values(values).required(false));
    }
    Ok(command)
}

/// Runs `value` through `arg`'s own parser and validators, alone: a throwaway command with
/// only this option (no environment, no default) parses `--option=value`. (clap keeps
/// `ValueParser::parse_ref` to itself.)
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("invalid value '{value}': expected true or false")),
        };
    }
    let long = arg.get_long().unwrap_or_default();
    let probe = Command::new("config-file")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            arg.clone()
                .env(None)
                .default_value(None)
                .value_delimiter(None)
                .required(false)
                .global(false),
        );
    probe
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
        .map_err(|e| clap_message(&e))
}

fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// clap's message without its `error:` prefix and its "try --help" footer.
fn clap_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let text = text.trim_start_matches("error: ");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Options {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:1")]
        listen: std::net::SocketAddr,
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
        #[arg(long, default_value_t = 2)]
        threshold: u8,
        #[arg(long, default_value = "5s", value_parser = humantime_like)]
        interval: Duration,
        #[arg(long)]
        verbose: bool,
        #[arg(last = true)]
        rest: Vec<String>,
    }

    fn humantime_like(s: &str) -> Result<Duration, String> {
        s.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is not a number of seconds"))
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn parse(args: &[&str]) -> Result<Options, ConfigFileError> {
        try_parse_from(std::iter::once("prog").chain(args.iter().copied()))
    }

    #[test]
    fn file_values_fill_in_what_flags_do_not_set() {
        let f = file(
            "listen = \"0.0.0.0:9\"\npeers = [\"a\", \"b\"]\nthreshold = 3\ninterval = \"7s\"\nverbose = true\n",
        );
        let path = f.path().to_str().expect("utf-8 path");
        let o = parse(&["--config", path]).expect("valid");
        assert_eq!(o.listen.to_string(), "0.0.0.0:9");
        assert_eq!(o.peers, ["a", "b"]);
        assert_eq!(o.threshold, 3);
        assert_eq!(o.interval, Duration::from_secs(7));
        assert!(o.verbose);

        let o = parse(&[
            &format!("--config={path}"),
            "--threshold",
            "4",
            "--peers",
            "c",
        ])
        .expect("valid");
        assert_eq!(o.threshold, 4, "a flag beats the file");
        assert_eq!(o.peers, ["c"]);
        assert_eq!(o.listen.to_string(), "0.0.0.0:9");
    }

    #[test]
    fn without_a_file_built_in_defaults_and_required_options_stand() {
        let o = parse(&["--peers", "a,b"]).expect("valid");
        assert_eq!(o.threshold, 2);
        assert_eq!(o.peers, ["a", "b"]);
        assert!(matches!(parse(&[]), Err(ConfigFileError::CommandLine(_))));
    }

    #[test]
    fn config_after_double_dash_is_not_ours() {
        let o = parse(&["--peers", "a", "--", "--config", "/nonexistent"]).expect("valid");
        assert_eq!(o.rest, ["--config", "/nonexistent"]);
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let cases = [
            ("threshold = \"many\"\n", "key `threshold`"),
            ("threshold = 300\n", "key `threshold`"),
            (
                "interval = \"soon\"\n",
                "\"soon\" is not a number of seconds",
            ),
            ("listen = [\"a\"]\n", "not a list"),
            ("peers = [{ a = 1 }]\n", "key `peers`"),
            (
                "thresold = 3\n",
                "unknown key `thresold` (known keys: interval, listen, peers, threshold, verbose)",
            ),
            ("config = \"x\"\n", "unknown key `config`"),
            ("threshold = \n", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let f = file(text);
            let path = f.path().to_str().expect("utf-8 path");
            let error = parse(&["--config", path]).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains(path), "{text:?}: {error}");
        }
        let error = parse(&["--config", "/nonexistent/x.toml"]).expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("cannot read config file /nonexistent/x.toml")
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let f = file("listen = \"0.0.0.0:9\"\npeers = [\n");
        let path = f.path().to_str().expect("utf-8 path");
        let error = parse(&["--config", path]).expect_err("syntax").to_string();
        assert!(
            error.contains("line 2") || error.contains("line 3"),
            "{error}"
        );
    }
}
