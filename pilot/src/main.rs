//! `spike`: the admin CLI for Nexus.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    pilot::memory::lock();
    let cli: pilot::Cli = common_process::config_file::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pilot::run(cli)) {
        Ok(output) => {
            // A closed stdout (`spike ... | head`) is not worth a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(&output.stdout)
                .and_then(|()| stdout.flush());
            ExitCode::from(output.code)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
