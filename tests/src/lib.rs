//! Test support: start the real `spire-server` and `spire-agent` binaries in a temporary
//! directory, drive them through their CLIs, and stop them when the test ends.
//!
//! Every helper waits on a condition (a health check answering, a socket accepting, an SVID
//! arriving) with a deadline; none sleeps a fixed time and hopes.

pub mod secrets;
pub mod stack;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory of the workspace's built binaries, building them once per test process.
///
/// `cargo test` only builds a package's binaries for that package's own integration tests, so
/// every workspace binary is built here with the same profile (a no-op when up to date).
pub fn bin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut args = vec!["build", "--workspace", "--bins"];
        if !cfg!(debug_assertions) {
            // An optimised caller (the bench) measures optimised binaries.
            args.push("--release");
        }
        let status = Command::new(env!("CARGO"))
            .current_dir(&workspace)
            .args(&args)
            .status()
            .expect("running cargo build for the test binaries");
        assert!(status.success(), "building the binaries under test failed");
        let exe = std::env::current_exe().expect("test executable path");
        // Tests run from target/<profile>/deps/, binaries (the bench) from target/<profile>/.
        let dir = exe.parent().expect("target directory layout");
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent().expect("target directory layout").to_path_buf()
        } else {
            dir.to_path_buf()
        }
    })
}

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on loopback (the kernel picks it; the listener is closed right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}
