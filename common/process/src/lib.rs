//! Process plumbing every binary shares: config files, logging set-up, shutdown signals,
//! supervision of background tasks and hardening for processes that hold key material.

pub mod config_file;
pub mod files;
pub mod supervise;

pub use supervise::{Backoff, Running, Supervisor, TaskFailed};

/// Runs `main` to its end on a new multi-threaded runtime: the exit code of a binary whose
/// work is async. An error (or a runtime that cannot start) is printed as `Error: ...` with
/// its whole chain (`{:#}`) and makes the exit code a failure.
pub fn run_to_exit_code<F, E>(main: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `level`, unless `RUST_LOG` says otherwise.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// Locks all of this process's memory so secrets are never swapped out.
///
/// Only when the locked-memory limit is unlimited (root, or `LimitMEMLOCK=infinity` under
/// systemd): with a finite limit, `MCL_FUTURE` would make allocations fail once the process
/// outgrows it. The error says why memory was not locked.
pub fn lock_memory() -> Result<(), String> {
    use nix::sys::mman::{MlockAllFlags, mlockall};
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == RLIM_INFINITY => {
            mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
                .map_err(|e| format!("mlockall failed: {e}"))
        }
        Ok(_) => Err("the locked-memory limit (RLIMIT_MEMLOCK) is finite; run with CAP_IPC_LOCK and an unlimited limit".into()),
        Err(e) => Err(format!("cannot read RLIMIT_MEMLOCK: {e}")),
    }
}

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime does),
/// so that the listeners' connection limits, not a default of 1024 descriptors, decide how
/// many connections it holds; warns when even the hard limit is below `needed`.
pub fn raise_open_files_limit(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let hard = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return;
        }
    };
    if hard < needed {
        tracing::warn!(
            limit = hard,
            needed,
            "the open-files limit is below what the connection limits allow: raise it (LimitNOFILE) or lower max_connections and max_handshakes"
        );
    }
}

/// Hardening for a process that holds key material (Nexus, keepers): no core dumps, so a
/// crash never writes keys to disk, and memory locked where allowed ([`lock_memory`]).
/// Failures are logged, not fatal.
///
/// A non-dumpable process's `/proc/<pid>` belongs to root, so an agent attesting it by
/// `unix:path` must run as root (as SPIRE's agent usually does).
pub fn harden() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    if let Err(reason) = lock_memory() {
        tracing::warn!("memory not locked: {reason}");
    }
}
