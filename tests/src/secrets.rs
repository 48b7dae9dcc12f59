//! The whole secrets plane as real processes: identity server and agent, keepers, Nexus, and
//! the `spike` CLI, each getting its SVID from the agent by the path of its binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use nexus_api::Client;
use spiffe::X509Source;

use crate::stack::{Agent, Process, Server};
use crate::{bin, next_id, wait_for};

/// Trust domain of the stack.
pub const TD: &str = "example.org";
/// Nexus's SPIFFE ID.
pub const NEXUS_ID: &str = "spiffe://example.org/spike/nexus";
/// The keepers' SPIFFE ID.
pub const KEEPER_ID: &str = "spiffe://example.org/spike/keeper";
/// The admin CLI's SPIFFE ID.
pub const SUPERUSER_ID: &str = "spiffe://example.org/spike/pilot/role/superuser";

/// The name of the first Nexus's files; replicas are `replica-<n>`.
const FIRST: &str = "nexus";
/// What Nexus logs with the address it bound for its API.
const NEXUS_LISTENING: &str = "nexus listening";

/// A secret version's values from `(key, value)` pairs.
pub fn values(pairs: &[(&str, &str)]) -> nexus_api::model::Values {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A client TLS config presenting `source`'s SVID and accepting only Nexus (for
/// [`crate::mtls`]).
pub fn nexus_tls(source: &X509Source) -> Arc<rustls::ClientConfig> {
    let td = spiffe::TrustDomain::new(TD).expect("trust domain");
    let nexus = identity::SpiffeId::new(NEXUS_ID).expect("Nexus ID");
    Arc::new(
        identity::workload::client_config(source.clone(), td, identity::workload::exactly(nexus))
            .expect("client TLS config"),
    )
}

/// Identity server, agent, keepers and Nexus in one temporary directory.
pub struct SecretsStack {
    pub server: Server,
    pub agent: Agent,
    pub dir: PathBuf,
    /// The keepers' ports, which each keeper reported when it first bound port 0; restarts
    /// bind the same port again (Nexus's config names it).
    pub keeper_ports: Vec<u16>,
    pub keepers: Vec<Option<Process>>,
    /// The first Nexus's port: 0 until it first started (on port 0) and reported the port it
    /// bound; restarts bind the same port again.
    pub nexus_port: u16,
    /// The plain-HTTP metrics port of the first Nexus, learnt like `nexus_port` (replicas
    /// have none).
    pub metrics_port: u16,
    pub nexus: Option<Process>,
    /// Nexus's `--database-url`; `None`: the default SQLite file in its data directory.
    pub database_url: Option<String>,
    /// Further Nexus replicas ([`SecretsStack::start_nexus_replica`]), in start order.
    pub replicas: Vec<Replica>,
    /// Extra lines for every Nexus's config file (e.g. `rate_limit = 0` for benchmarks).
    pub nexus_config: String,
    /// How many of `keeper_ports` (the first ones) Nexus's config file lists; keepers
    /// added later ([`SecretsStack::add_keeper`]) are reached only through a rekey.
    pub configured_keepers: usize,
    /// Extra environment variables for every Nexus started from now on (e.g. a test
    /// failpoint).
    pub nexus_env: Vec<(String, String)>,
    agent_id: String,
    uid: String,
}

/// A further Nexus process sharing the first one's keepers and database.
pub struct Replica {
    pub port: u16,
    pub process: Process,
}

impl Replica {
    /// Its URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

/// The `unix:path:` selector of the binary at `path` (canonical, as the agent sees it).
pub fn unix_path(path: &Path) -> String {
    format!(
        "unix:path:{}",
        path.canonicalize().expect("binary path").display()
    )
}

impl SecretsStack {
    /// Starts everything with `keepers` keepers and waits until Nexus is ready.
    pub async fn start(dir: &Path, keepers: usize) -> SecretsStack {
        let mut stack = SecretsStack::start_without_nexus(dir, keepers, None).await;
        stack.start_nexus().await;
        stack.wait_ready().await;
        stack
    }

    /// Like [`SecretsStack::start`], with Nexus's data in the database at `database_url`.
    pub async fn start_with_database(
        dir: &Path,
        keepers: usize,
        database_url: &str,
    ) -> SecretsStack {
        let mut stack = SecretsStack::start_without_nexus(dir, keepers, Some(database_url)).await;
        stack.start_nexus().await;
        stack.wait_ready().await;
        stack
    }

    /// Starts the identity server and agent and `keepers` keepers (waiting until each has
    /// bound its port), but no Nexus yet; Nexus will use `database_url` (`None`: its default
    /// SQLite file).
    pub async fn start_without_nexus(
        dir: &Path,
        keepers: usize,
        database_url: Option<&str>,
    ) -> SecretsStack {
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
            keeper_ports: vec![0; keepers],
            keepers: (0..keepers).map(|_| None).collect(),
            nexus_port: 0,
            metrics_port: 0,
            nexus: None,
            database_url: database_url.map(str::to_owned),
            replicas: Vec::new(),
            nexus_config: String::new(),
            configured_keepers: keepers,
            nexus_env: Vec::new(),
            agent_id,
            uid,
        };
        for i in 0..keepers {
            stack.start_keeper(i);
        }
        for i in 0..keepers {
            let keeper = stack.keepers[i].as_mut().expect("keeper just started");
            stack.keeper_ports[i] = keeper.logged_address("keeper ready").await.port();
        }
        stack
    }

    /// Starts keeper `i` (0-based; it holds shard `i + 1`) on its port, or on port 0 the
    /// first time (then [`SecretsStack::start_without_nexus`] reads the port it bound).
    pub fn start_keeper(&mut self, i: usize) {
        let mut cmd = Command::new(bin("keeper"));
        cmd.args([
            "--listen",
            &format!("127.0.0.1:{}", self.keeper_ports[i]),
            "--trust-domain",
            TD,
        ])
        .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint());
        let log = self.dir.join(format!("keeper-{i}-{}.log", next_id()));
        self.keepers[i] = Some(Process::spawn(cmd, log));
    }

    /// Starts one more keeper on port 0, not in Nexus's config file; returns its index once
    /// it has bound its port (its URL is [`SecretsStack::keeper_url`]).
    pub async fn add_keeper(&mut self) -> usize {
        let i = self.keeper_ports.len();
        self.keeper_ports.push(0);
        self.keepers.push(None);
        self.start_keeper(i);
        let keeper = self.keepers[i].as_mut().expect("keeper just started");
        self.keeper_ports[i] = keeper.logged_address("keeper ready").await.port();
        i
    }

    /// The URL of keeper `i`.
    pub fn keeper_url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.keeper_ports[i])
    }

    /// Kills keeper `i` (SIGKILL: its shard is gone with it).
    pub fn kill_keeper(&mut self, i: usize) {
        if let Some(mut keeper) = self.keepers[i].take() {
            keeper.kill();
        }
    }

    /// The audit log of the first Nexus (kept across its restarts).
    pub fn audit_log(&self) -> PathBuf {
        self.audit_log_of(FIRST)
    }

    /// Every line of the first Nexus's audit log, in order.
    pub fn audit_entries(&self) -> Vec<serde_json::Value> {
        crate::audit_entries(&self.audit_log())
    }

    /// The first Nexus's audit lines of `route`, in order.
    pub fn audit_lines(&self, route: &str) -> Vec<serde_json::Value> {
        self.audit_entries()
            .into_iter()
            .filter(|line| line["route"] == route)
            .collect()
    }

    fn audit_log_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("audit-{name}.log"))
    }

    /// Nexus's `/metrics` text (from the Nexus on the stack's own port).
    pub async fn metrics(&self) -> String {
        crate::http_get(&format!("127.0.0.1:{}", self.metrics_port), "/metrics").await
    }

    /// Kills the first Nexus and starts it again on the same data, waiting until it is
    /// ready.
    pub async fn restart_nexus(&mut self) {
        self.kill_nexus();
        self.start_nexus().await;
        self.wait_ready().await;
    }

    /// Starts Nexus (without waiting for it to be ready). The first start binds port 0 for
    /// the API and for metrics, and waits until Nexus reports the ports it got; restarts bind
    /// the same ports again.
    pub async fn start_nexus(&mut self) {
        self.start_nexus_and_replicas(0).await;
    }

    /// Starts Nexus and `replicas` further Nexus processes on ports of their own, with the
    /// same keepers and database, all spawned before any is waited for (so they race to
    /// initialise an empty database), without waiting for them to be ready, only for the ports
    /// they bound; returns the replicas' URLs. With replicas the stack must have a database
    /// URL: two processes never share the default SQLite file.
    pub async fn start_nexus_and_replicas(&mut self, replicas: usize) -> Vec<String> {
        assert!(
            replicas == 0 || self.database_url.is_some(),
            "replicas share a database: start the stack with a database URL"
        );
        self.nexus = Some(self.spawn_nexus(FIRST, self.nexus_port, Some(self.metrics_port)));
        let first = self.replicas.len();
        for n in first..first + replicas {
            let process = self.spawn_nexus(&format!("replica-{}", n + 1), 0, None);
            self.replicas.push(Replica { port: 0, process });
        }
        if self.nexus_port == 0 {
            let nexus = self.nexus.as_mut().expect("Nexus was just spawned");
            self.nexus_port = nexus.logged_address(NEXUS_LISTENING).await.port();
            self.metrics_port = nexus.logged_address("metrics at http://").await.port();
        }
        let mut urls = Vec::new();
        for replica in &mut self.replicas[first..] {
            replica.port = replica.process.logged_address(NEXUS_LISTENING).await.port();
            urls.push(replica.url());
        }
        urls
    }

    /// Spawns Nexus `name` (its config, audit log and log files are named after it) on
    /// `port`, serving metrics on `metrics` (`None`: no metrics).
    fn spawn_nexus(&self, name: &str, port: u16, metrics: Option<u16>) -> Process {
        // Most settings come from a config file, as operators run it; the port is a flag.
        let keepers: Vec<String> = self.keeper_ports[..self.configured_keepers]
            .iter()
            .map(|p| format!("\"https://127.0.0.1:{p}\""))
            .collect();
        let mut config = format!(
            "trust_domain = \"{TD}\"\nkeepers = [{}]\nkeeper_probe_interval = \"300ms\"\ndata_dir = {:?}\naudit_log = {:?}\n",
            keepers.join(", "),
            self.dir.join("nexus-data"),
            self.audit_log_of(name),
        );
        if let Some(url) = &self.database_url {
            config.push_str(&format!("database_url = {url:?}\n"));
        }
        let metrics = match metrics {
            Some(port) => format!("127.0.0.1:{port}"),
            None => "off".to_owned(),
        };
        config.push_str(&format!("metrics_listen = {metrics:?}\n"));
        config.push_str(&self.nexus_config);
        let config_path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("write the Nexus config file");
        let mut cmd = Command::new(bin("nexus"));
        cmd.arg("--config")
            .arg(&config_path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint())
            .envs(self.nexus_env.iter().map(|(k, v)| (k, v)));
        let log = self.dir.join(format!("{name}-{}.log", next_id()));
        Process::spawn(cmd, log)
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

    /// The logs of every Nexus process running now (the first one, then the replicas).
    pub fn nexus_logs(&self) -> String {
        let mut logs = self.nexus_log();
        for replica in &self.replicas {
            logs.push_str(&replica.process.log());
        }
        logs
    }

    /// The Nexus URL.
    pub fn nexus_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.nexus_port)
    }

    /// Waits until `spike status` says ready.
    pub async fn wait_ready(&mut self) {
        self.wait_ready_at(&self.nexus_url()).await;
    }

    /// Waits until `spike status` against the Nexus at `url` says ready; panics if a Nexus
    /// process exited meanwhile.
    pub async fn wait_ready_at(&mut self, url: &str) {
        let timeout = Duration::from_secs(60);
        let ready = wait_for(
            "Nexus to be ready",
            timeout + Duration::from_secs(10),
            || {
                if let Some(status) = self.nexus.as_mut().and_then(Process::try_exit) {
                    panic!("nexus exited ({status}):\n{}", self.nexus_log());
                }
                for replica in &mut self.replicas {
                    if let Some(status) = replica.process.try_exit() {
                        panic!(
                            "nexus replica exited ({status}):\n{}",
                            replica.process.log()
                        );
                    }
                }
                let ready = self.spike_at(url, &["status"]).status.success();
                async move { ready.then_some(()) }
            },
        );
        // On a timeout, say why: the logs of every Nexus and of the last `spike status`.
        if tokio::time::timeout(timeout + Duration::from_secs(5), ready)
            .await
            .is_err()
        {
            let status = self.spike_at(url, &["status"]);
            panic!(
                "Nexus at {url} not ready after {timeout:?}\nspike status: {}{}\nnexus logs:\n{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr),
                self.nexus_logs()
            );
        }
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

    /// Registers the running test binary as `spiffe_id` and returns its SVID source, once
    /// the SVID for that ID has arrived.
    pub async fn identity_as(&self, spiffe_id: &str) -> X509Source {
        let me = std::env::current_exe().expect("test executable");
        self.register(&me, spiffe_id);
        let source =
            identity::workload::x509_source(Some(&self.agent.endpoint()), Duration::from_secs(30))
                .await
                .expect("the test's SVID");
        let id = identity::workload::own_id(&source).expect("own SPIFFE ID");
        assert_eq!(id.to_string(), spiffe_id);
        source
    }

    /// A Nexus client over its own connection pool, presenting `source`'s SVID.
    pub fn client(&self, source: &X509Source) -> Client {
        Client::connect(source.clone(), &self.nexus_url(), TD).expect("Nexus client")
    }

    /// Runs the admin `spike` with `args`.
    pub fn spike(&self, args: &[&str]) -> Output {
        self.run(&bin("spike"), args, None)
    }

    /// Runs the admin `spike` with `args` against the Nexus at `url`.
    pub fn spike_at(&self, url: &str, args: &[&str]) -> Output {
        self.run_at(url, &bin("spike"), args, None)
    }

    /// The admin `spike` with `args` against the first Nexus, without blocking the runtime
    /// (for tests whose own tasks must keep running meanwhile).
    pub async fn spike_async(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(bin("spike"))
            .args(args)
            .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint())
            .env("SPIKE_NEXUS_API_URL", self.nexus_url())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("spawning spike")
    }

    /// Runs `binary` (a `spike` copy) with `args`, feeding `stdin` if given.
    pub fn run(&self, binary: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.run_at(&self.nexus_url(), binary, args, stdin)
    }

    /// Runs `binary` (a `spike` copy) with `args` against the Nexus at `url`, feeding
    /// `stdin` if given.
    pub fn run_at(&self, url: &str, binary: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("SPIFFE_ENDPOINT_SOCKET", self.agent.endpoint())
            .env("SPIKE_NEXUS_API_URL", url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawning spike");
        if let (Some(mut input), Some(bytes)) = (child.stdin.take(), stdin) {
            input.write_all(bytes).expect("writing stdin");
        }
        child.wait_with_output().expect("spike output")
    }

    /// `spike status -f json` at the Nexus at `url`, whatever its exit code (3 while
    /// sealed); panics on any other exit code.
    pub fn status_at(&self, url: &str) -> serde_json::Value {
        let out = self.spike_at(url, &["status", "-f", "json"]);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "spike status at {url}: {}{}",
            crate::stdout(&out),
            crate::stderr(&out)
        );
        crate::json(&crate::stdout(&out))
    }

    /// `spike secret put <path> <key>=<value>` as the admin, which must succeed.
    pub fn spike_put(&self, path: &str, key: &str, value: &str) -> String {
        self.spike_put_at(&self.nexus_url(), path, key, value)
    }

    /// [`SecretsStack::spike_put`] against the Nexus at `url`.
    pub fn spike_put_at(&self, url: &str, path: &str, key: &str, value: &str) -> String {
        self.spike_ok_at(url, &["secret", "put", path, &format!("{key}={value}")])
    }

    /// What `spike secret get <path> <key>` prints as the admin (it must succeed): the value
    /// and a newline.
    pub fn spike_get(&self, path: &str, key: &str) -> String {
        self.spike_ok(&["secret", "get", path, key])
    }

    /// [`SecretsStack::spike_get`] against the Nexus at `url`.
    pub fn spike_get_at(&self, url: &str, path: &str, key: &str) -> String {
        self.spike_ok_at(url, &["secret", "get", path, key])
    }

    /// Runs the admin `spike`, panicking with its stderr unless it succeeds; returns stdout.
    pub fn spike_ok(&self, args: &[&str]) -> String {
        self.spike_ok_at(&self.nexus_url(), args)
    }

    /// [`SecretsStack::spike_ok`] against the Nexus at `url`.
    pub fn spike_ok_at(&self, url: &str, args: &[&str]) -> String {
        let out = self.spike_at(url, args);
        assert!(
            out.status.success(),
            "spike {args:?} at {url} failed ({}):\nstdout: {}\nstderr: {}\nnexus logs:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.nexus_logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
