//! `keeper`: holds one shard of Nexus's root key.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: keeper::Config = common_process::config_file::parse();
    common_process::init_logging(&config.log_level);
    match keeper::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
