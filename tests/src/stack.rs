//! Real identity server and agent processes for end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use identity::svid_tls::{self, SvidStore};
use spire_proto::server::agent_client::AgentClient;
use tonic::transport::Channel;

use crate::certs::Svid;
use crate::{bin, next_id, wait_for};

/// Kills a child process when dropped.
pub struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with stdout and stderr going to `log`.
    pub fn spawn(mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("creating a log file");
        let err = file.try_clone().expect("cloning the log file handle");
        command.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        let child = command.spawn().expect("spawning a process under test");
        Process {
            child: Some(child),
            log,
        }
    }

    /// The process's combined output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether the process has exited, and with what status.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the process to exit (it must do so on its own within `timeout`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("the process to exit", timeout, || {
            let status = self.try_exit();
            async move { status }
        })
        .await
    }

    /// The address the process logged on a line containing `marker` (see
    /// [`crate::logged_address`]): where it bound a port it was given as 0. The line is at
    /// info level, the binaries' default (a `RUST_LOG` or log level above info hides it).
    /// Waits up to 60 s for the line; panics with the log if the process exits first.
    pub async fn logged_address(&mut self, marker: &str) -> SocketAddr {
        let what = format!("{marker:?} with an address in {}", self.log.display());
        wait_for(&what, Duration::from_secs(60), || {
            if let Some(status) = self.try_exit() {
                panic!(
                    "exited ({status}) before logging {marker:?}:\n{}",
                    self.log()
                );
            }
            let address = crate::logged_address(&self.log(), marker);
            async move { address }
        })
        .await
    }

    /// The `host:port` of the metrics endpoint of a process started with a metrics address
    /// on port 0 ([`crate::ANY_PORT`]), from its "metrics at" log line.
    pub async fn metrics_address(&mut self) -> String {
        self.logged_address("metrics at http://").await.to_string()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `<binary> healthcheck -socketPath <socket>` passes; panics with the process's
/// log if it exits first.
async fn wait_healthy(process: &mut Process, binary: &str, socket: &Path) {
    let what = format!("{binary} to become healthy");
    wait_for(&what, Duration::from_secs(30), || {
        if let Some(status) = process.try_exit() {
            panic!("{binary} exited ({status}):\n{}", process.log());
        }
        let ok = Command::new(bin(binary))
            .arg("healthcheck")
            .arg("-socketPath")
            .arg(socket)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        async move { ok.then_some(()) }
    })
    .await;
}

/// `spire-server run` on loopback `port` (0: a port the kernel picks, logged as "server
/// ready"), its files in `dir`; each start logs to a new file.
fn spawn_server(
    dir: &Path,
    trust_domain: &str,
    port: u16,
    socket: &Path,
    extra: &[String],
    env: &[(String, String)],
) -> Process {
    let mut cmd = Command::new(bin("spire-server"));
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg("run")
        .args(["-trustDomain", trust_domain, "-bindAddress", "127.0.0.1"])
        .args(["-serverPort", &port.to_string()])
        .arg("-dataDir")
        .arg(dir.join("data"))
        .arg("-socketPath")
        .arg(socket)
        .args(extra);
    Process::spawn(cmd, dir.join(format!("server-{}.log", next_id())))
}

/// A running `spire-server`.
pub struct Server {
    pub process: Process,
    pub trust_domain: String,
    pub socket: PathBuf,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server for `trust_domain` with its data in `dir`, plus any extra flags.
    pub async fn start(dir: &Path, trust_domain: &str, extra: &[&str]) -> Server {
        Server::start_with_env(dir, trust_domain, extra, &[]).await
    }

    /// [`Server::start`] with extra environment variables (kept for restarts).
    pub async fn start_with_env(
        dir: &Path,
        trust_domain: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        std::fs::create_dir_all(dir).expect("server dir");
        let socket = dir.join("admin.sock");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut process = spawn_server(dir, trust_domain, 0, &socket, &extra, &env);
        let port = process.logged_address("server ready").await.port();
        let mut server = Server {
            process,
            trust_domain: trust_domain.into(),
            socket,
            port,
            dir: dir.to_owned(),
            extra,
            env,
        };
        server.wait_healthy().await;
        server
    }

    /// Kills the server and starts it again with the same port, data and flags. (The port is
    /// free again between the kill and the new bind; the agents know no other.)
    pub async fn restart(&mut self) {
        self.process.kill();
        self.process = spawn_server(
            &self.dir,
            &self.trust_domain,
            self.port,
            &self.socket,
            &self.extra,
            &self.env,
        );
        self.wait_healthy().await;
    }

    /// Waits until `healthcheck` passes; panics with the log if the server died.
    pub async fn wait_healthy(&mut self) {
        wait_healthy(&mut self.process, "spire-server", &self.socket).await;
    }

    /// Runs a `spire-server` admin command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("spire-server"))
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket)
            .output()
            .expect("running spire-server")
    }

    /// Runs an admin command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "spire-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// The CA certificates in the server's stored bundle (base64 DER, sorted).
    pub fn stored_cas(&self) -> Vec<String> {
        crate::bundle_cas(&self.cli_ok(&["bundle", "show", "-format", "spiffe"]))
    }

    /// A new join token.
    pub fn join_token(&self, extra: &[&str]) -> String {
        let mut args = vec!["token", "generate"];
        args.extend_from_slice(extra);
        let out = self.cli_ok(&args);
        out.trim()
            .strip_prefix("Token: ")
            .expect("`Token: <value>` output")
            .to_owned()
    }

    /// Writes the bundle (PEM) to `<dir>/bundle.pem` and returns its path.
    pub fn write_bundle(&self) -> PathBuf {
        let path = self.dir.join("bundle.pem");
        std::fs::write(&path, self.cli_ok(&["bundle", "show"])).expect("writing bundle");
        path
    }

    /// Creates an entry; returns its ID.
    pub fn create_entry(
        &self,
        spiffe_id: &str,
        parent_id: &str,
        selectors: &[&str],
        extra: &[&str],
    ) -> String {
        let mut args = vec![
            "entry",
            "create",
            "-spiffeID",
            spiffe_id,
            "-parentID",
            parent_id,
        ];
        for s in selectors {
            args.extend_from_slice(&["-selector", s]);
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-output", "json"]);
        let out = self.cli_ok(&args);
        let json: serde_json::Value = serde_json::from_str(&out).expect("entry JSON");
        json["id"].as_str().expect("entry id").to_owned()
    }

    /// The IDs of the attested agents, as `agent list -output json` prints them.
    pub fn agent_ids(&self) -> Vec<String> {
        let out = self.cli_ok(&["agent", "list", "-output", "json"]);
        let json: serde_json::Value = serde_json::from_str(&out).expect("agent list JSON");
        json["agents"]
            .as_array()
            .expect("agents array")
            .iter()
            .map(|a| a["id"].as_str().expect("agent id").to_owned())
            .collect()
    }

    /// The trust bundle's CA certificates (DER), from `bundle show`.
    pub fn bundle_der(&self) -> Vec<Vec<u8>> {
        let pem = self.cli_ok(&["bundle", "show"]);
        spire_proto::bundle_format::parse_x509_authorities(pem.as_bytes()).expect("bundle PEM")
    }

    /// A client of this server's agent API over mTLS, presenting `svid` (or no certificate
    /// at all, as an agent that has yet to attest), and accepting only
    /// `spiffe://<td>/spire/server` verified against the server's bundle.
    pub fn agent_api(&self, svid: Option<&Svid>) -> AgentClient<Channel> {
        let bundle = self.bundle_der();
        let store = Arc::new(SvidStore::new(&bundle).expect("store"));
        if let Some(svid) = svid {
            store.set_svid(&svid.chain, &svid.key).expect("SVID");
        }
        let server_id = format!("spiffe://{}/spire/server", self.trust_domain);
        let server_id = spiffe::SpiffeId::new(server_id).expect("ID");
        let tls = svid_tls::client_config(store, svid_tls::exactly(server_id)).expect("TLS");
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("address");
        AgentClient::new(identity::dial::grpc_channel(addr, Arc::new(tls)))
    }

    /// The agent ID a join token yields.
    pub fn agent_id(&self, token: &str) -> String {
        format!(
            "spiffe://{}/spire/agent/join_token/{token}",
            self.trust_domain
        )
    }
}

/// The `selectors` of an entry or agent as the CLI prints them in JSON, as `type:value`.
pub fn selector_strings(json: &serde_json::Value) -> Vec<String> {
    json["selectors"]
        .as_array()
        .expect("selectors")
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["type"].as_str().unwrap_or(""),
                s["value"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A running `spire-agent`.
pub struct Agent {
    pub process: Process,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
}

impl Agent {
    /// Command line for an agent of `server` with its files in `dir`.
    pub fn command(server: &Server, dir: &Path, token: Option<&str>, bundle: &Path) -> Command {
        let mut cmd = Command::new(bin("spire-agent"));
        cmd.arg("run")
            .args([
                "-trustDomain",
                &server.trust_domain,
                "-serverAddress",
                "127.0.0.1",
            ])
            .args([
                "-serverPort",
                &server.port.to_string(),
                "-syncInterval",
                "300ms",
            ])
            .arg("-trustBundle")
            .arg(bundle)
            .arg("-dataDir")
            .arg(dir.join("data"))
            .arg("-socketPath")
            .arg(dir.join("api.sock"));
        if let Some(token) = token {
            cmd.args(["-joinToken", token]);
        }
        cmd
    }

    /// Spawns an agent without waiting for it.
    pub fn spawn(server: &Server, dir: &Path, token: Option<&str>, bundle: &Path) -> Agent {
        Agent::spawn_with(server, dir, token, bundle, &[])
    }

    /// [`Agent::spawn`] with extra flags.
    pub fn spawn_with(
        server: &Server,
        dir: &Path,
        token: Option<&str>,
        bundle: &Path,
        extra: &[&str],
    ) -> Agent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let mut cmd = Agent::command(server, dir, token, bundle);
        cmd.args(extra);
        Agent {
            process: Process::spawn(cmd, dir.join(format!("agent-{}.log", next_id()))),
            socket: dir.join("api.sock"),
            data_dir: dir.join("data"),
        }
    }

    /// Starts an agent and waits until its Workload API is healthy.
    pub async fn start(server: &Server, dir: &Path, token: Option<&str>) -> Agent {
        Agent::start_with(server, dir, token, &[]).await
    }

    /// [`Agent::start`] with extra flags.
    pub async fn start_with(
        server: &Server,
        dir: &Path,
        token: Option<&str>,
        extra: &[&str],
    ) -> Agent {
        let bundle = server.write_bundle();
        let mut agent = Agent::spawn_with(server, dir, token, &bundle, extra);
        wait_healthy(&mut agent.process, "spire-agent", &agent.socket).await;
        agent
    }

    /// An agent of `server` (attested with a new join token) and an entry under it giving
    /// this process (its UID) the SPIFFE ID `workload`.
    pub async fn start_for_workload(server: &Server, dir: &Path, workload: &str) -> Agent {
        let token = server.join_token(&[]);
        let agent = Agent::start(server, dir, Some(&token)).await;
        let uid = nix::unistd::geteuid().as_raw().to_string();
        server.create_entry(
            workload,
            &server.agent_id(&token),
            &[&format!("unix:uid:{uid}")],
            &[],
        );
        agent
    }

    /// A JWT-SVID for `audience` from the agent, validated against the agent's JWT bundles.
    pub async fn validated_jwt(&self, audience: &str) -> spiffe::JwtSvid {
        let client = spiffe::WorkloadApiClient::connect_to(self.endpoint())
            .await
            .expect("Workload API");
        let svid = client
            .fetch_jwt_svid(&[audience], None)
            .await
            .expect("JWT-SVID");
        let bundles = client.fetch_jwt_bundles().await.expect("JWT bundles");
        spiffe::JwtSvid::parse_and_validate(svid.token(), &bundles, &[audience])
            .expect("the JWT-SVID validates against the agent's JWT bundle")
    }

    /// Runs a `spire-agent` client command (`healthcheck`, `api ...`) against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("spire-agent"))
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket)
            .output()
            .expect("running spire-agent")
    }

    /// The `SPIFFE_ENDPOINT_SOCKET` URI of this agent.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// This process's default X509-SVID from the agent, waiting (up to 20 s) for the agent to
    /// sync a new entry.
    pub async fn fetch_svid(&self) -> spiffe::X509Svid {
        let endpoint = self.endpoint();
        wait_for(
            "an X509-SVID from the agent",
            Duration::from_secs(20),
            || {
                let endpoint = endpoint.clone();
                async move {
                    spiffe::WorkloadApiClient::connect_to(endpoint)
                        .await
                        .ok()?
                        .fetch_x509_svid()
                        .await
                        .ok()
                }
            },
        )
        .await
    }
}
