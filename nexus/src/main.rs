//! `nexus`: the secrets service.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: nexus::Config = common_process::config_file::parse();
    common_process::init_logging(&config.log_level);
    match nexus::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
