//! Config files (`common_process::config_file`, TOML under clap), in both layouts: Nexus's
//! flat file (`nexus --config FILE`) and the identity server's sectioned one (`spire-server
//! run --config FILE`: options under `[server]`, typed tables beside them). The first byte
//! picks the layout; every binary reads its file one of these two ways.
//!
//! Properties: a file is either accepted or refused as a file (syntax, unknown key, invalid
//! value, each naming the file): every value is checked with its option's own parser
//! beforehand, so nothing in a file surfaces later as a command-line error. The one
//! command-line error a file can leave is a required option it does not set (the identity
//! server's trust domain). The identity server's checks that span options (`Invalid`) come
//! after, and never panic.
#![no_main]

use common_process::config_file::{ConfigFileError, try_parse_from};
use libfuzzer_sys::fuzz_target;
use spire_server::config::{ConfigError, ServerConfig};

fuzz_target!(|input: &[u8]| {
    let Some((&layout, text)) = input.split_first() else {
        return;
    };
    let path = std::env::temp_dir().join(format!("spike-fuzz-config-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("writes the file");
    let path = path.to_str().expect("UTF-8 temp path");
    if layout % 2 == 0 {
        match try_parse_from::<nexus::Config, _, _>(["nexus", "--config", path]) {
            Ok(_) => {}
            Err(ConfigFileError::CommandLine(e)) => panic!("a file value failed late: {e}"),
            Err(e) => assert!(e.to_string().contains(path), "{e}"),
        }
    } else {
        match ServerConfig::from_run_args(["--config".to_owned(), path.to_owned()]) {
            Ok(_) | Err(ConfigError::Invalid { .. }) => {}
            Err(ConfigError::File(ConfigFileError::CommandLine(e))) => assert_eq!(
                e.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "a file value failed late: {e}"
            ),
            Err(ConfigError::File(e)) => assert!(e.to_string().contains(path), "{e}"),
        }
    }
});
