//! The README's first command, `./quickstart.sh`, run as a newcomer would (non-interactively,
//! in a temporary directory, every port given as 0 so the kernel picks it): it brings the
//! whole stack up and round-trips a secret; run again, it kills Nexus with SIGKILL and shows it
//! unsealing itself on the same ports; `status` and `down` do what they say.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every port the script takes, as 0: each process binds what the kernel gives it and logs it.
const ANY_PORTS: [(&str, &str); 4] = [
    ("SPIKE_QUICKSTART_SERVER_PORT", "0"),
    ("SPIKE_QUICKSTART_NEXUS_PORT", "0"),
    ("SPIKE_QUICKSTART_METRICS_PORT", "0"),
    ("SPIKE_QUICKSTART_KEEPER_PORTS", "0 0 0"),
];

/// The quickstart script with its directory set; `down` when dropped.
struct Quickstart {
    dir: PathBuf,
}

impl Quickstart {
    fn new(dir: &Path) -> Self {
        Quickstart {
            dir: dir.to_owned(),
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
            .envs(ANY_PORTS)
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
}

/// Where the script says Nexus's metrics are ("Metrics: curl -s http://ADDRESS/metrics").
fn metrics_address(output: &str) -> &str {
    output
        .lines()
        .find_map(|line| line.strip_prefix("Metrics: curl -s http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in:\n{output}"))
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
    let metrics_at = metrics_address(&first);
    assert!(!metrics_at.ends_with(":0"), "{metrics_at}");
    let metrics = tests::http_get(metrics_at, "/metrics").await;
    assert_eq!(tests::metric(&metrics, "nexus_sealed", &[]), Some(0.0));
    assert_eq!(
        tests::metric(&metrics, "nexus_keepers_reachable", &[]),
        Some(3.0)
    );

    // Again: Nexus is killed with SIGKILL, restarts from the keepers and serves the secret.
    let second = quickstart.run_ok("up");
    assert!(second.contains("restarting Nexus (kill -9)"), "{second}");
    assert!(second.contains("ms after start"), "{second}");
    // The restarted Nexus took the ports the first run got, so what the first run printed
    // still points at it.
    let metrics = tests::http_get(metrics_at, "/metrics").await;
    assert_eq!(tests::metric(&metrics, "nexus_sealed", &[]), Some(0.0));
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
