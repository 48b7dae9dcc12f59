//! Config files (`common_process::config_file`, TOML under clap), here Nexus's (`nexus
//! --config FILE`); every binary reads its file the same way.
//!
//! Properties: a file is either accepted or refused as a file (syntax, unknown key, invalid
//! value, each naming the file): every value is checked with its option's own parser
//! beforehand, so nothing in a file surfaces later as a command-line error.
#![no_main]

use common_process::config_file::{ConfigFileError, try_parse_from};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let path = std::env::temp_dir().join(format!("spike-fuzz-config-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("writes the file");
    let args = ["nexus", "--config", path.to_str().expect("UTF-8 temp path")];
    match try_parse_from::<nexus::Config, _, _>(args) {
        Ok(_) => {}
        Err(ConfigFileError::CommandLine(e)) => panic!("a file value failed late: {e}"),
        Err(e) => assert!(e.to_string().contains("spike-fuzz-config-"), "{e}"),
    }
});
