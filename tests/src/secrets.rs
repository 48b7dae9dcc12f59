//! The whole secrets plane as real processes: identity server and agent, keepers, Nexus, and
//! the `spike` CLI, each getting its SVID from the agent by the path of its binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::stack::{Agent, Process, Server};
use crate::{bin, free_port, wait_for};

/// Trust domain of the stack.
pub const TD: &str = "example.org";
/// Nexus's SPIFFE ID.
pub const NEXUS_ID: &str = "spiffe://example.org/spike/nexus";
/// The keepers' SPIFFE ID.
pub const KEEPER_ID: &str = "spiffe://example.org/spike/keeper";
/// The admin CLI's SPIFFE ID.
pub const SUPERUSER_ID: &str = "spiffe://example.org/spike/pilot/role/superuser";

/// Identity server, agent, keepers and Nexus in one temporary directory.
pub struct SecretsStack {
    pub server: Server,
    pub agent: Agent,
    pub dir: PathBuf,
    pub keeper_ports: Vec<u16>,
    pub keepers: Vec<Option<Process>>,
    pub nexus_port: u16,
    pub nexus: Option<Process>,
    agent_id: String,
    uid: String,
}

fn unix_path(path: &Path) -> String {
    format!(
        "unix:path:{}",
        path.canonicalize().expect("binary path").display()
    )
}

impl SecretsStack {
    /// Starts everything with `keepers` keepers and waits until Nexus is ready.
    pub async fn start(dir: &Path, keepers: usize) -> SecretsStack {
        let server = Server::start(&dir.join("server"), TD, &[]).await;
        let token = server.join_token(&[]);
        let agent = Agent::start(&server, &dir.join("agent"), Some(&token)).await;
        let agent_id = server.agent_id(&token);
        let uid = format!("unix:uid:{}", nix::unistd::geteuid());
        for (id, binary) in [
            (NEXUS_ID, bin("nexus")),
            (KEEPER_ID, bin("keeper")),
            (SUPERUSER_ID, bin("spike")),
        ] {
            server.create_entry(id, &agent_id, &[&uid, &unix_path(&binary)], &[]);
        }
        let mut stack = SecretsStack {
            server,
            agent,
            dir: dir.to_owned(),
            keeper_ports: (0..keepers).map(|_| free_port()).collect(),
            keepers: (0..keepers).map(|_| None).collect(),
            nexus_port: free_port(),
            nexus: None,
            agent_id,
            uid,
        };
        for i in 0..keepers {
            stack.start_keeper(i);
        }
        stack.start_nexus();
        stack.wait_ready().await;
        stack
    }

    /// Starts keeper `i` (0-based; it holds shard `i + 1`).
    pub fn start_keeper(&mut self, i: usize) {
        let mut cmd = Command::new(bin("keeper"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{}", self.keeper_ports[i]),
            "--trust-domain",
            TD,
        ])
        .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint());
        let log = self.dir.join(format!("keeper-{i}-{}.log", free_port()));
        self.keepers[i] = Some(Process::spawn(cmd, log));
    }

    /// Kills keeper `i` (SIGKILL: its shard is gone with it).
    pub fn kill_keeper(&mut self, i: usize) {
        if let Some(mut keeper) = self.keepers[i].take() {
            keeper.kill();
        }
    }

    /// Starts Nexus (without waiting for it to be ready).
    pub fn start_nexus(&mut self) {
        let keepers: Vec<String> = self
            .keeper_ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        let mut cmd = Command::new(bin("nexus"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{}", self.nexus_port),
            "--trust-domain",
            TD,
            "--keepers",
            &keepers.join(","),
            "--keeper-probe-interval",
            "300ms",
        ])
        .arg("--data-dir")
        .arg(self.dir.join("nexus-data"))
        .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint());
        let log = self.dir.join(format!("nexus-{}.log", free_port()));
        self.nexus = Some(Process::spawn(cmd, log));
    }

    /// Kills Nexus (SIGKILL).
    pub fn kill_nexus(&mut self) {
        if let Some(mut nexus) = self.nexus.take() {
            nexus.kill();
        }
    }

    /// Nexus's log so far.
    pub fn nexus_log(&self) -> String {
        self.nexus.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The Nexus URL.
    pub fn nexus_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.nexus_port)
    }

    /// Waits until `spike status` says ready.
    pub async fn wait_ready(&mut self) {
        let timeout = Duration::from_secs(60);
        wait_for("Nexus to be ready", timeout, || {
            if let Some(status) = self.nexus.as_mut().and_then(Process::try_exit) {
                panic!("nexus exited ({status}):\n{}", self.nexus_log());
            }
            let ready = self.spike(&["status"]).status.success();
            async move { ready.then_some(()) }
        })
        .await;
    }

    /// A copy of the `spike` binary at `<dir>/bin/<name>`, registered as `spiffe_id`, so a
    /// test can act as an ordinary workload.
    pub fn workload(&self, name: &str, spiffe_id: &str) -> PathBuf {
        let dir = self.dir.join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let path = dir.join(name);
        std::fs::copy(bin("spike"), &path).expect("copying spike");
        self.register(&path, spiffe_id);
        path
    }

    /// Registers processes of this uid running `binary` as `spiffe_id`.
    pub fn register(&self, binary: &Path, spiffe_id: &str) {
        self.server.create_entry(
            spiffe_id,
            &self.agent_id,
            &[&self.uid, &unix_path(binary)],
            &[],
        );
    }

    /// Runs the admin `spike` with `args`.
    pub fn spike(&self, args: &[&str]) -> Output {
        self.run(&bin("spike"), args, None)
    }

    /// Runs `binary` (a `spike` copy) with `args`, feeding `stdin` if given.
    pub fn run(&self, binary: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint())
            .env("SPIKE_NEXUS_API_URL", self.nexus_url())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawning spike");
        if let (Some(mut input), Some(bytes)) = (child.stdin.take(), stdin) {
            input.write_all(bytes).expect("writing stdin");
        }
        child.wait_with_output().expect("spike output")
    }

    /// Runs the admin `spike`, panicking with its stderr unless it succeeds; returns stdout.
    pub fn spike_ok(&self, args: &[&str]) -> String {
        let out = self.spike(args);
        assert!(
            out.status.success(),
            "spike {args:?} failed ({}):\nstdout: {}\nstderr: {}\nnexus log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.nexus_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
