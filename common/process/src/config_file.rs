//! A TOML configuration file under a clap command line.
//!
//! Every scalar key of the file is the id of a long option (the field name: `shamir_threshold`
//! for `--shamir-threshold`, `trust_domain` for SPIRE's `-trustDomain`), so `--help` documents
//! the file too. The file's values become the options' defaults, which gives the usual
//! precedence: flag, then environment variable, then file, then built-in default. Each value is
//! checked with the option's own parser before anything runs, so a bad file is one error
//! naming the file and the key.
//!
//! Two layouts ([`Layout`]):
//! - flat (Nexus, keepers, `spike`): the options are the file's top-level keys;
//! - sectioned (`spire-server run`, `spire-agent run`, SPIRE's shape): the options are the
//!   keys of one table (`[server]`), and that table's other keys (sub-tables such as
//!   `[server.federation]`) are deserialised with serde into a typed value the binary
//!   declares (`deny_unknown_fields` there, so a typo is an error too). The options may
//!   belong to a subcommand (`spire-server run --config FILE`).
//!
//! The file is read once; every problem is a [`ConfigFileError`] naming the file and the key
//! (dotted: `server.federation.bundle_endpoint.port`).
//!
//! clap has no config-file support and the crates that add it (figment, config) would make
//! every option's type, default and documentation live twice; this module keeps clap the one
//! description of the options.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};
use serde::de::DeserializeOwned;

/// The id of the option that names the file (`--config FILE`, and its environment variable).
pub const CONFIG_OPTION: &str = "config";

/// Where a binary's options are, in its command line and in its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// The subcommand whose options the file sets (`run`); `None`: the top-level command.
    /// Other subcommands read no file.
    pub subcommand: Option<&'static str>,
    /// The table that holds the options (`server` for `[server]`); `None`: the top level.
    pub section: Option<&'static str>,
}

impl Layout {
    /// Options at the top level of the file and of the command line.
    pub const FLAT: Layout = Layout {
        subcommand: None,
        section: None,
    };

    /// Options under `[section]` of the file, for the subcommand `subcommand`.
    pub const fn sectioned(subcommand: &'static str, section: &'static str) -> Layout {
        Layout {
            subcommand: Some(subcommand),
            section: Some(section),
        }
    }

    /// `key` as the file spells it in full (`server.bind_port`).
    fn key(&self, key: &str) -> String {
        match self.section {
            Some(section) => format!("{section}.{key}"),
            None => key.to_owned(),
        }
    }
}

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
    /// A value the option (or the section's type) does not accept.
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
/// defaults ([`Layout::FLAT`]); exits with a clear message when anything is wrong.
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
    let (value, _) = load::<T>(&Layout::FLAT, None, collect(args))?;
    Ok(value)
}

/// [`try_parse_sectioned_from`], exiting with a clear message when anything is wrong.
pub fn parse_sectioned_from<T, N, I, S>(layout: &Layout, args: I) -> (T, N)
where
    T: CommandFactory + FromArgMatches,
    N: DeserializeOwned + Default,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    try_parse_sectioned_from(layout, args).unwrap_or_else(|e| e.exit())
}

/// Parses `T` from `args` (the first is the program name) and the environment, with the
/// option keys of the file's `layout.section` as defaults, and the section's other keys
/// deserialised into `N` (`N::default()` without a file, or when `args` choose another
/// subcommand than `layout.subcommand`).
pub fn try_parse_sectioned_from<T, N, I, S>(
    layout: &Layout,
    args: I,
) -> Result<(T, N), ConfigFileError>
where
    T: CommandFactory + FromArgMatches,
    N: DeserializeOwned + Default,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let fields = struct_fields::<N>();
    let (value, rest) = load::<T>(layout, Some(fields), collect(args))?;
    let Some((path, rest)) = rest.filter(|(_, rest)| !rest.is_empty()) else {
        return Ok((value, N::default()));
    };
    let nested = serde_path_to_error::deserialize(toml::Value::Table(rest)).map_err(|e| {
        let key = match e.path().to_string().as_str() {
            "." => layout.section.unwrap_or_default().to_owned(),
            at => layout.key(at),
        };
        ConfigFileError::Invalid {
            path,
            key,
            message: e.into_inner().message().to_owned(),
        }
    })?;
    Ok((value, nested))
}

fn collect<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Vec<OsString> {
    args.into_iter().map(Into::into).collect()
}

/// The keys a sectioned layout hands to serde: every key, or only these.
type Fields = Option<&'static [&'static str]>;

/// Parses the command line with the file's option values as defaults. `nested`: `None` for
/// the flat layout (every key must be an option); otherwise the keys that are no option go
/// back, with the file's path, for the caller's serde type (those it names, or all).
fn load<T: CommandFactory + FromArgMatches>(
    layout: &Layout,
    nested: Option<Fields>,
    args: Vec<OsString>,
) -> Result<(T, Option<(PathBuf, toml::Table)>), ConfigFileError> {
    let mut command = T::command();
    let mut rest = None;
    // Where the options of the layout's command start in `args`.
    let start = match layout.subcommand {
        None => Some(1),
        Some(name) => args
            .iter()
            .skip(1)
            .position(|a| !a.to_string_lossy().starts_with('-'))
            .map(|i| i + 1)
            .filter(|&i| args[i] == name)
            .map(|i| i + 1),
    };
    let target = match layout.subcommand {
        None => Some(command.clone()),
        Some(name) => command.find_subcommand(name).cloned(),
    };
    if let (Some(start), Some(target)) = (start, target)
        && let Some(path) = config_path(&target, &args[start..])
    {
        let (target, others) = with_file_defaults(target, &path, layout, nested)?;
        command = match layout.subcommand {
            None => target,
            Some(name) => command.mut_subcommand(name, |_| target),
        };
        rest = Some((path, others));
    }
    let matches = command.try_get_matches_from_mut(args)?;
    Ok((T::from_arg_matches(&matches)?, rest))
}

/// The file named by `--config FILE`, `--config=FILE` (before any `--`) or the option's
/// environment variable; an empty value means none. `args` are the command's own.
fn config_path(command: &Command, args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().take_while(|a| *a != "--");
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

/// Sets the file's option values as `command`'s defaults; returns the section's other keys
/// (when `nested` allows them).
fn with_file_defaults(
    mut command: Command,
    path: &Path,
    layout: &Layout,
    nested: Option<Fields>,
) -> Result<(Command, toml::Table), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigFileError::Syntax {
        path: path.to_owned(),
        message: e.message().to_owned() + &location(&text, e.span()),
    })?;
    if let Some(section) = layout.section {
        let inner = match table.remove(section) {
            None => toml::Table::new(),
            Some(toml::Value::Table(inner)) => inner,
            Some(_) => {
                return Err(ConfigFileError::Invalid {
                    path: path.to_owned(),
                    key: section.to_owned(),
                    message: format!("expected a table ([{section}])"),
                });
            }
        };
        if let Some(key) = table.keys().next() {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                known: format!("[{section}], which holds every setting"),
            });
        }
        table = inner;
    }
    let mut others = toml::Table::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str() && settable(a))
        else {
            match nested {
                Some(None) => {
                    others.insert(key, value);
                    continue;
                }
                Some(Some(fields)) if fields.contains(&key.as_str()) => {
                    others.insert(key, value);
                    continue;
                }
                _ => {}
            }
            let mut known: Vec<String> = command
                .get_arguments()
                .filter(|a| settable(a))
                .map(|a| a.get_id().to_string())
                .collect();
            known.sort();
            if let Some(Some(fields)) = nested {
                known.extend(fields.iter().map(|f| format!("[{}]", layout.key(f))));
            }
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key: layout.key(&key),
                known: known.join(", "),
            });
        };
        let invalid = |message: String| ConfigFileError::Invalid {
            path: path.to_owned(),
            key: layout.key(&key),
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
    Ok((command, others))
}

/// The field names of `N` when it is a struct (what serde's derive passes to
/// `deserialize_struct`), so that an unknown key can be told from a section's: a probe
/// deserializer records them and stops. (serde has no other way to list a type's fields.)
fn struct_fields<N: DeserializeOwned>() -> Fields {
    use serde::de::value::Error as ProbeError;
    use serde::de::{Error, Visitor};
    struct Probe(Fields);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = ProbeError;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
            Err(ProbeError::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, ProbeError> {
            self.0 = Some(fields);
            Err(ProbeError::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = N::deserialize(&mut probe);
    probe.0
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

    /// A SPIRE-shaped program: options of `run` under `[server]`, sub-tables typed by serde.
    #[derive(Debug, Parser)]
    struct Spire {
        #[command(subcommand)]
        command: SpireCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum SpireCommand {
        Run(RunOptions),
        Other {
            #[arg(long)]
            config: Option<String>,
        },
    }

    #[derive(Debug, clap::Args)]
    struct RunOptions {
        #[arg(long = "config", env = "CONFIG_FILE_TEST_UNSET_VARIABLE")]
        config: Option<PathBuf>,
        #[arg(long = "trustDomain", required = true)]
        trust_domain: String,
        /// The flag's name and the file's key differ, as SPIRE's `-serverPort`/`bind_port`.
        #[arg(long = "serverPort", default_value_t = 8081)]
        bind_port: u16,
        #[arg(long = "caTTL", default_value = "24s", value_parser = humantime_like)]
        ca_ttl: Duration,
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sections {
        #[serde(default)]
        federation: Federation,
        limits: Option<std::collections::BTreeMap<String, u32>>,
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Federation {
        port: Option<u16>,
    }

    const SPIRE: Layout = Layout::sectioned("run", "server");

    fn spire(args: &[&str]) -> Result<(RunOptions, Sections), ConfigFileError> {
        let (cli, sections): (Spire, Sections) =
            try_parse_sectioned_from(&SPIRE, std::iter::once("spire").chain(args.iter().copied()))?;
        match cli.command {
            SpireCommand::Run(run) => Ok((run, sections)),
            SpireCommand::Other { .. } => panic!("not run"),
        }
    }

    #[test]
    fn a_sectioned_file_sets_the_options_of_its_subcommand_and_types_its_tables() {
        let f = file(
            "[server]\ntrust_domain = \"file.org\"\nbind_port = 9000\n\
             [server.federation]\nport = 8443\n[server.limits]\nagent_api = 5\n",
        );
        let path = f.path().to_str().expect("utf-8 path");
        let (run, sections) = spire(&["run", "--config", path]).expect("valid");
        assert_eq!(run.trust_domain, "file.org");
        assert_eq!(run.bind_port, 9000);
        assert_eq!(run.ca_ttl, Duration::from_secs(24), "built-in default");
        assert_eq!(sections.federation.port, Some(8443));
        assert_eq!(sections.limits.expect("limits")["agent_api"], 5);

        let (run, _) = spire(&[
            "run",
            "--trustDomain",
            "flag.org",
            "--config",
            path,
            "--caTTL",
            "3s",
        ])
        .expect("valid");
        assert_eq!(run.trust_domain, "flag.org", "a flag beats the file");
        assert_eq!(run.ca_ttl, Duration::from_secs(3));
        assert_eq!(run.bind_port, 9000);

        // Without a file: defaults, and the sections' own defaults.
        let (run, sections) = spire(&["run", "--trustDomain", "x.org"]).expect("valid");
        assert_eq!(run.bind_port, 8081);
        assert_eq!(sections, Sections::default());
        // Another subcommand's `--config` is not this layout's file.
        let cli: (Spire, Sections) =
            try_parse_sectioned_from(&SPIRE, ["spire", "other", "--config", "/nonexistent"])
                .expect("not read");
        assert!(matches!(cli.0.command, SpireCommand::Other { .. }));
    }

    /// `--port`, read from the variable that only the test below sets (other tests would
    /// see it while set).
    #[derive(Debug, Parser)]
    struct EnvCli {
        #[command(subcommand)]
        command: EnvCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum EnvCommand {
        Run {
            #[arg(long)]
            config: Option<PathBuf>,
            #[arg(
                long = "serverPort",
                env = "CONFIG_FILE_TEST_PORT",
                default_value_t = 1
            )]
            bind_port: u16,
        },
    }

    #[test]
    fn in_a_sectioned_file_the_environment_beats_the_file_and_a_flag_beats_both() {
        let f = file("[server]\nbind_port = 9000\n");
        let path = f.path().to_str().expect("utf-8 path");
        let port = |args: &[&str]| {
            let (cli, ()): (EnvCli, ()) = try_parse_sectioned_from(
                &SPIRE,
                ["spire", "run", "--config", path]
                    .into_iter()
                    .chain(args.iter().copied()),
            )
            .expect("valid");
            let EnvCommand::Run { bind_port, .. } = cli.command;
            bind_port
        };
        assert_eq!(port(&[]), 9000, "file over default");
        #[allow(unsafe_code)]
        // SAFETY: no other thread reads or writes this variable (only this test's parser has
        // it), and Rust's own environment functions are synchronised.
        unsafe {
            std::env::set_var("CONFIG_FILE_TEST_PORT", "9100");
        }
        let from_env = port(&[]);
        let from_flag = port(&["--serverPort", "9200"]);
        #[allow(unsafe_code)]
        // SAFETY: as above.
        unsafe {
            std::env::remove_var("CONFIG_FILE_TEST_PORT");
        }
        assert_eq!(from_env, 9100, "environment over file");
        assert_eq!(from_flag, 9200, "flag over environment");
    }

    #[test]
    fn sectioned_files_name_the_file_and_the_dotted_key_of_every_fault() {
        let cases = [
            (
                "[server]\ntrust_domian = \"x.org\"\n",
                "unknown key `server.trust_domian` (known keys: bind_port, ca_ttl, trust_domain, \
                 [server.federation], [server.limits])",
            ),
            ("[server]\nbind_port = \"high\"\n", "key `server.bind_port`"),
            ("[server]\nbind_port = 70000\n", "key `server.bind_port`"),
            (
                "[server]\nca_ttl = \"soon\"\n",
                "\"soon\" is not a number of seconds",
            ),
            (
                "[server.federation]\nprot = 1\n",
                "key `server.federation.prot`: unknown field `prot`, expected `port`",
            ),
            (
                "[server.federation]\nport = \"x\"\n",
                "key `server.federation.port`",
            ),
            (
                "[server.limits]\nagent_api = -1\n",
                "key `server.limits.agent_api`",
            ),
            (
                "trust_domain = \"x.org\"\n",
                "unknown key `trust_domain` (known keys: [server]",
            ),
            ("server = 1\n", "key `server`: expected a table"),
            ("[server]\nbind_port = \n", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let f = file(text);
            let path = f.path().to_str().expect("utf-8 path");
            let error = spire(&["run", "--trustDomain", "x.org", "--config", path])
                .expect_err(text)
                .to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains(path), "{text:?}: {error}");
        }
    }
}
