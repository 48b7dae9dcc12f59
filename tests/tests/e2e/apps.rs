//! Applications that fetch their database password from Nexus over mTLS: `examples/db-app`
//! (Rust) and `examples/python/db_app.py`, as real processes, each getting its SVID from the
//! agent by the path of its binary, logging in to a real PostgreSQL with the password Nexus
//! gives it, and following a password rotation.
//!
//! The PostgreSQL is a private cluster this test starts from the installed server binaries
//! (`initdb` + `postgres`, about a second), not the shared server at 127.0.0.1:5432: that one
//! trusts every connection (`pg_hba.conf`: `trust` for local and 127.0.0.1), so a login there
//! succeeds with any password and would prove nothing about the one from Nexus. The private
//! cluster trusts only its `postgres` superuser (for setup) and requires SCRAM-SHA-256 of
//! every other role, which the test checks first by being refused with a wrong password.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use tests::secrets::SecretsStack;
use tests::stack::Process;
use tests::{free_port, stderr, stdout, wait_for};

/// The PostgreSQL role the applications log in as.
const ROLE: &str = "app_orders";
/// Its password, then the rotated one. Neither may appear in any application output.
const PASSWORD_1: &str = "pw1-5d0c3b9e7a21";
const PASSWORD_2: &str = "pw2-c84f16a0be93";
/// The applications' SPIFFE IDs, granted `read` on `db/password` by one policy.
const RUST_APP_ID: &str = "spiffe://example.org/app/db";
const PYTHON_APP_ID: &str = "spiffe://example.org/app/db-python";
const POLICY: &str = "name: db-app
spiffeidPattern: ^spiffe://example\\.org/app/db(-python)?$
pathPattern: ^db/password$
permissions: [read]
";
/// Authentication of the private cluster: the superuser is trusted, everyone else needs SCRAM.
const PG_HBA: &str = "host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn apps_log_in_with_the_password_from_nexus_and_follow_rotation() {
    tests::bin_dir(); // Builds the binaries first, so the timings below are the test's own.
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = ScramPostgres::start().await;
    pg.sql(&format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD_1}'"
    ))
    .await;
    // Password authentication is really in force: the right password is needed.
    let wrong = PgConnection::connect_with(&pg.options(ROLE, "not-the-password")).await;
    let error = wrong
        .expect_err("a wrong password must be refused")
        .to_string();
    assert!(error.contains("password authentication failed"), "{error}");

    let stack = SecretsStack::start(dir.path(), 3).await;
    println!("stack and PostgreSQL up after {:?}", started.elapsed());
    put_password(&stack, PASSWORD_1);
    let policy = dir.path().join("db-app.yaml");
    std::fs::write(&policy, POLICY).expect("policy file");
    stack.spike_ok(&["policy", "apply", "--file", &policy.display().to_string()]);
    let app = tests::bin("db-app");
    stack.register(&app, RUST_APP_ID);
    let db = pg.app_args();
    let db: Vec<&str> = db.iter().map(String::as_str).collect();

    // One shot: the SVID gets the secret, the secret gets the login.
    let once = stack.run(&app, &db, None);
    assert_eq!(
        stdout(&once),
        format!("connected as {ROLE}\n"),
        "{}",
        stderr(&once)
    );
    assert!(once.status.success());

    // Another binary, registered under an ID no policy grants, is refused and says why.
    let stranger = dir.path().join("db-app-stranger");
    std::fs::copy(&app, &stranger).expect("copying db-app");
    stack.register(&stranger, "spiffe://example.org/app/stranger");
    let refused = stack.run(&stranger, &db, None);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    let why = stderr(&refused);
    assert!(why.contains("not authorised"), "{why}");
    assert!(why.contains("spiffe://example.org/app/stranger"), "{why}");
    assert!(stdout(&refused).is_empty());

    // Watch mode, in Rust and in Python.
    let mut rust = spawn_app(&stack, &app, &[], &db, "db-app-watch");
    let python = python_with_packages(dir.path());
    stack.register(&python, PYTHON_APP_ID);
    let script = db_app_py();
    let script = script.to_str().expect("UTF-8 path");
    let mut py_args = vec![script];
    py_args.extend_from_slice(&db);
    let py_once = stack.run(&python, &py_args, None);
    assert_eq!(
        stdout(&py_once),
        format!("connected as {ROLE}\n"),
        "{}",
        stderr(&py_once)
    );
    assert!(py_once.status.success(), "{}", stderr(&py_once));
    // spiffe-tls checks the chain but no name: db_app.py checks Nexus's SPIFFE ID itself.
    let mut elsewhere = py_args.clone();
    elsewhere.extend_from_slice(&["--trust-domain", "other.org"]);
    let impostor = stack.run(&python, &elsewhere, None);
    assert!(!impostor.status.success());
    let why = stderr(&impostor);
    assert!(
        why.contains(
            "is spiffe://example.org/spike/nexus, not Nexus (spiffe://other.org/spike/nexus)"
        ),
        "{why}"
    );
    let mut py = spawn_app(&stack, &python, &[script], &db, "db-app-py-watch");
    for watcher in [&mut rust, &mut py] {
        wait_for_line(watcher, &format!("connected as {ROLE}")).await;
    }

    // Rotation: the database first, then Nexus. Each watcher logs in with the new password.
    pg.sql(&format!("ALTER ROLE {ROLE} PASSWORD '{PASSWORD_2}'"))
        .await;
    let rotated = Instant::now();
    put_password(&stack, PASSWORD_2);
    for watcher in [&mut rust, &mut py] {
        wait_for_line(
            watcher,
            &format!("reconnected as {ROLE} (secret version 2)"),
        )
        .await;
    }
    println!(
        "both apps reconnected {:?} after the put",
        rotated.elapsed()
    );

    // SIGTERM ends both cleanly.
    for watcher in [&mut rust, &mut py] {
        let status = terminate(watcher).await;
        assert!(status.success(), "{status}:\n{}", watcher.log());
    }
    for output in [
        rust.log(),
        py.log(),
        stdout(&once) + &stderr(&once),
        stdout(&py_once) + &stderr(&py_once),
        stderr(&refused),
    ] {
        for password in [PASSWORD_1, PASSWORD_2] {
            assert!(
                !output.contains(password),
                "a password was printed:\n{output}"
            );
        }
    }
    println!("apps test took {:?}", started.elapsed());
}

/// `spike secret put db/password username=<ROLE> password=<password>` as the admin.
fn put_password(stack: &SecretsStack, password: &str) {
    stack.spike_ok(&[
        "secret",
        "put",
        "db/password",
        &format!("username={ROLE}"),
        &format!("password={password}"),
    ]);
}

/// Starts `program first.. db.. --watch --interval 300ms` as a workload of `stack`.
fn spawn_app(
    stack: &SecretsStack,
    program: &Path,
    first: &[&str],
    db: &[&str],
    name: &str,
) -> Process {
    let mut cmd = Command::new(program);
    cmd.args(first)
        .args(db)
        .args(["--watch", "--interval", "300ms"])
        .env("SPIFFE_ENDPOINT_SOCKET", stack.agent.endpoint())
        .env("SPIKE_NEXUS_API_URL", stack.nexus_url());
    Process::spawn(cmd, stack.dir.join(format!("{name}.log")))
}

/// Waits until `app`'s output holds `line`; panics with its output if it exits first.
async fn wait_for_line(app: &mut Process, line: &str) {
    wait_for(&format!("`{line}`"), WAIT, || {
        if let Some(status) = app.try_exit() {
            panic!("the app exited ({status}) before `{line}`:\n{}", app.log());
        }
        let found = app.log().lines().any(|l| l == line);
        async move { found.then_some(()) }
    })
    .await;
}

/// Sends SIGTERM and waits for the process to exit.
async fn terminate(app: &mut Process) -> ExitStatus {
    let pid = Pid::from_raw(i32::try_from(app.pid()).expect("pid fits in i32"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    app.wait_exit(WAIT).await
}

/// `examples/python/db_app.py`.
fn db_app_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python/db_app.py")
        .canonicalize()
        .expect("examples/python/db_app.py")
}

/// A Python interpreter of its own (a venv with `--copies`), so that registering its path
/// grants this test's interpreter and not every Python program on the machine. It sees the
/// system's site packages, where `pip install -r examples/python/requirements.txt` put them.
fn python_with_packages(dir: &Path) -> PathBuf {
    const INSTALL: &str = "install them with `python3 -m pip install -r examples/python/requirements.txt` \
                           (.ci/run does)";
    let check = Command::new("python3")
        .args(["-c", "import spiffe, spiffetls, psycopg"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed for the Python example ({e}); {INSTALL}"));
    assert!(
        check.status.success(),
        "the Python example's packages are missing ({}); {INSTALL}",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .args([
            "-m",
            "venv",
            "--copies",
            "--system-site-packages",
            "--without-pip",
        ])
        .arg(&venv)
        .output()
        .expect("python3 -m venv");
    assert!(
        made.status.success(),
        "python3 -m venv failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    venv.join("bin/python3")
}

/// A throwaway PostgreSQL cluster on a free loopback port: the `postgres` superuser is
/// trusted (for setup), every other role must log in with its SCRAM password. Stopped
/// (fast shutdown) and deleted when dropped, roles and all.
struct ScramPostgres {
    process: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ScramPostgres {
    async fn start() -> ScramPostgres {
        let bin = pg_bindir();
        // PostgreSQL refuses to run as root; as root, run it as the `postgres` user.
        let owner = nix::unistd::geteuid().is_root().then(|| {
            User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root, the `postgres` user is needed to run PostgreSQL")
        });
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(user) = &owner {
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let initdb = as_owner(&bin.join("initdb"), owner.as_ref(), dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("running initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        std::fs::write(data.join("pg_hba.conf"), PG_HBA).expect("pg_hba.conf");
        let port = free_port();
        let mut cmd = as_owner(&bin.join("postgres"), owner.as_ref(), dir.path());
        cmd.arg("-D").arg(&data).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
        ]);
        let mut pg = ScramPostgres {
            process: Process::spawn(cmd, dir.path().join("postgres.log")),
            port,
            _dir: dir,
        };
        let options = pg.options("postgres", "");
        wait_for("PostgreSQL to accept connections", WAIT, || {
            if let Some(status) = pg.process.try_exit() {
                panic!("postgres exited ({status}):\n{}", pg.process.log());
            }
            let options = options.clone();
            async move { PgConnection::connect_with(&options).await.ok() }
        })
        .await;
        pg
    }

    /// Login options for `user` with `password` (over TCP to 127.0.0.1).
    fn options(&self, user: &str, password: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .database("postgres")
            .username(user)
            .password(password)
    }

    /// Runs `statements` as the superuser.
    async fn sql(&self, statements: &str) {
        let mut conn = PgConnection::connect_with(&self.options("postgres", ""))
            .await
            .expect("superuser connection");
        conn.execute(statements).await.expect("admin SQL");
        let _ = conn.close().await;
    }

    /// The applications' database flags.
    fn app_args(&self) -> Vec<String> {
        [
            "--db-host",
            "127.0.0.1",
            "--db-port",
            &self.port.to_string(),
        ]
        .into_iter()
        .chain(["--db-name", "postgres"])
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for ScramPostgres {
    fn drop(&mut self) {
        // SIGINT is a fast shutdown; a SIGKILLed postmaster would leave its shared memory.
        if let Ok(pid) = i32::try_from(self.process.pid()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.process.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `program`, run as `owner` (if any) from `dir`.
fn as_owner(program: &Path, owner: Option<&User>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    if let Some(user) = owner {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd
}

/// Where PostgreSQL's server binaries are: on PATH, or in Debian's per-version directories.
fn pg_bindir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    on_path
        .into_iter()
        .chain(debian.into_iter().rev().map(|(_, bin)| bin))
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .expect(
            "PostgreSQL's server binaries (initdb, postgres) are needed: \
             `apt-get install postgresql` (.ci/run does)",
        )
}
