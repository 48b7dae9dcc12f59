//! The README's first command, `./quickstart.sh`, run as a newcomer would (non-interactively,
//! in a temporary directory and on free ports): it brings the whole stack up and round-trips a
//! secret; run again, it kills Nexus with SIGKILL and shows it unsealing itself; `status` and
//! `down` do what they say.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::free_port;

/// The quickstart script with its directory and ports set; `down` when dropped.
struct Quickstart {
    dir: PathBuf,
    ports: [(&'static str, String); 4],
}

impl Quickstart {
    fn new(dir: &Path) -> Self {
        let keepers = [free_port(), free_port(), free_port()].map(|p| p.to_string());
        Quickstart {
            dir: dir.to_owned(),
            ports: [
                ("SPIKE_QUICKSTART_SERVER_PORT", free_port().to_string()),
                ("SPIKE_QUICKSTART_NEXUS_PORT", free_port().to_string()),
                ("SPIKE_QUICKSTART_METRICS_PORT", free_port().to_string()),
                ("SPIKE_QUICKSTART_KEEPER_PORTS", keepers.join(" ")),
            ],
        }
    }

    fn run(&self, command: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../quickstart.sh");
        // The binaries the tests built, so the script's own `cargo build` has nothing to do.
        let profile = tests::bin_dir()
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile directory")
            .to_owned();
        // Its `cargo build` must see what a plain one would, or it rebuilds ring and up.
        tests::without_cargo_test_env(&mut Command::new("bash"))
            .arg(script)
            .arg(command)
            .env("SPIKE_QUICKSTART_DIR", &self.dir)
            .env("SPIKE_QUICKSTART_PROFILE", profile)
            .envs(self.ports.iter().map(|(k, v)| (k, v)))
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .output()
            .expect("run quickstart.sh")
    }

    fn run_ok(&self, command: &str) -> String {
        let output = self.run(command);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "quickstart.sh {command} failed:\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn metrics_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports[2].1)
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.run("down");
    }
}

#[tokio::test]
async fn quickstart_brings_the_stack_up_and_nexus_unseals_itself_when_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quickstart = Quickstart::new(&dir.path().join("qs"));

    let first = quickstart.run_ok("up");
    assert!(
        first.contains("attesting with a new single-use join token"),
        "{first}"
    );
    assert!(
        first.contains("read back: hello from quickstart"),
        "{first}"
    );
    for name in ["server", "agent", "keeper1", "keeper2", "keeper3", "nexus"] {
        assert!(
            first
                .lines()
                .any(|l| l.contains(name) && l.contains("running")),
            "{name} is not reported running:\n{first}"
        );
    }
    let metrics = tests::http_get(&quickstart.metrics_address(), "/metrics").await;
    assert_eq!(tests::metric(&metrics, "nexus_sealed", &[]), Some(0.0));
    assert_eq!(
        tests::metric(&metrics, "nexus_keepers_reachable", &[]),
        Some(3.0)
    );

    // Again: Nexus is killed with SIGKILL, restarts from the keepers and serves the secret.
    let second = quickstart.run_ok("up");
    assert!(second.contains("restarting Nexus (kill -9)"), "{second}");
    assert!(second.contains("ms after start"), "{second}");
    assert!(
        second.contains("read back: hello from quickstart"),
        "{second}"
    );

    // The audit log names the admin CLI for the round trips, and holds no secret value.
    let audit = std::fs::read_to_string(dir.path().join("qs/logs/audit.log")).expect("audit");
    assert!(audit.contains("spiffe://spike.ist/spike/pilot/role/superuser"));
    assert!(!audit.contains("hello from quickstart"));

    let status = quickstart.run_ok("status");
    assert_eq!(status.matches("running (pid").count(), 6, "{status}");
    quickstart.run_ok("down");
    let status = quickstart.run_ok("status");
    assert_eq!(status.matches("stopped").count(), 6, "{status}");
}
