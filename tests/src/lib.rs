//! Test support: start the real `spire-server` and `spire-agent` binaries in a temporary
//! directory, drive them through their CLIs, and stop them when the test ends.
//!
//! Every helper waits on a condition (a health check answering, a socket accepting, an SVID
//! arriving) with a deadline; none sleeps a fixed time and hopes.

pub mod bench;
pub mod certs;
pub mod flood;
pub mod mtls;
pub mod secrets;
pub mod softhsm;
pub mod stack;
pub mod web_pki;
pub mod x509pop;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(&workspace).args(&args);
        without_cargo_test_env(&mut cargo);
        let status = cargo
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

/// Removes from `command` the variables cargo gives a running test about its package
/// (CARGO_MANIFEST_DIR, ...), for a command that runs `cargo build` itself. Some build
/// scripts (ring's) rerun when those change, so passing them on would make that build and a
/// plain `cargo build` rebuild ring and everything above it in turn.
pub fn without_cargo_test_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if matches!(
            name.as_ref(),
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
        ) || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            command.env_remove(name.as_ref());
        }
    }
    command
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

/// A loopback address on port 0, for a listener of a process under test: the kernel picks a
/// free port and the process logs the address it bound ([`stack::Process::logged_address`]).
pub const ANY_PORT: &str = "127.0.0.1:0";

/// A number no earlier call in this process returned: it tells apart the log files of the
/// successive starts of one process.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The `address=` field of the first line of `log` that contains `marker`, as the binaries
/// log the address they bound ("nexus listening; unsealing address=127.0.0.1:41234").
pub fn logged_address(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|line| line.contains(marker))
        .find_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("address="))
                .and_then(|address| address.parse().ok())
        })
}

/// A TCP port for a program that cannot bind port 0 and say which port it got (PostgreSQL),
/// or for a URL nobody answers: the kernel picks it, the listener is closed right away, and no
/// other call in this process returns it again. Another process may still take it before the
/// program binds it, so everything that can report its address is started on port 0 instead.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port");
        if given.insert(port) {
            return port;
        }
    }
}

/// `GET path` over plain HTTP/1.1 from `address`; the body of a 200 answer (panics otherwise).
pub async fn http_get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

/// The body of a `Transfer-Encoding: chunked` HTTP/1.1 response.
pub fn dechunk(body: &str) -> String {
    String::from_utf8_lossy(&dechunk_bytes(body.as_bytes())).into_owned()
}

/// [`dechunk`] for a body that may not be text.
pub fn dechunk_bytes(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..end]);
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        let rest = &body[end + 2..];
        out.extend_from_slice(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// The CA certificates (`x5c[0]` of the `x509-svid` keys, base64) of a SPIFFE bundle
/// document, sorted.
pub fn bundle_cas(json: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(json).expect("JSON bundle");
    let mut cas: Vec<String> = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .map(|k| k["x5c"][0].as_str().expect("x5c").to_owned())
        .collect();
    cas.sort();
    cas
}

/// A finished command's standard output, as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `text` as one JSON document; panics, quoting it, if it is not one.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

/// The sum of the samples of metric `name` whose labels include `labels`, from Prometheus or
/// OpenMetrics text; `None` if there is no such sample. Panics on a malformed sample line.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let pairs: Vec<(&str, &str)> = series_labels
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').expect("label=value");
                (k, v.trim_matches('"'))
            })
            .collect();
        if labels.iter().all(|l| pairs.contains(l)) {
            let value: f64 = value.parse().expect("numeric sample");
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

/// Runs `openssl` with `args`; panics, with its output, unless it succeeds.
pub fn openssl<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// [`metric`] with no label filter, for a metric that must be there: panics, quoting `text`,
/// if it is not.
pub fn metric_value(text: &str, name: &str) -> f64 {
    metric(text, name, &[]).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Every line of the JSON-lines audit log at `path`, in order.
pub fn audit_entries(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(json)
        .collect()
}

#[cfg(test)]
mod logged_address_tests {
    use super::logged_address;

    #[test]
    fn reads_the_address_field_of_the_first_line_with_the_marker() {
        let log = "2026-12-06T08:00:00.000001Z  INFO nexus::run: opening the store path=/tmp/x\n\
                   2026-12-06T08:00:00.000002Z  INFO common_metrics: metrics at \
                   http://127.0.0.1:40001/metrics address=127.0.0.1:40001\n\
                   2026-12-06T08:00:00.000003Z  INFO nexus::run: nexus listening; unsealing \
                   address=127.0.0.1:40002\n";
        assert_eq!(
            logged_address(log, "nexus listening"),
            Some("127.0.0.1:40002".parse().expect("address"))
        );
        assert_eq!(
            logged_address(log, "metrics at http://"),
            Some("127.0.0.1:40001".parse().expect("address"))
        );
        assert_eq!(logged_address(log, "opening the store"), None);
        assert_eq!(logged_address(log, "server ready"), None);
    }
}
