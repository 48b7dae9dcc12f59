//! The audit log: one JSON line per API request, written before the response leaves.
//!
//! A line says who (the caller's SPIFFE ID from its verified certificate), what (route,
//! action, path or policy name), the decision, the status and the latency; never a secret
//! value, which no field can hold. Lines go to stdout or to a file opened for appending (mode
//! 0600). Each line is one `write(2)` of the whole line with no user-space buffer, so once the
//! write returns the line is the kernel's and survives a `kill -9` of Nexus. If it cannot be
//! written, the request fails instead of going unrecorded ([`crate::api`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: Mutex<std::fs::File>,
    },
}

/// One audit line.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When the request arrived, RFC 3339 UTC with microseconds.
    pub time: String,
    /// Also sent to the client in `x-request-id`.
    pub request_id: &'a str,
    /// The caller's SPIFFE ID (`-` if the connection had none).
    pub caller: &'a str,
    /// The route (the request's path for unknown routes).
    pub route: &'a str,
    /// The `action` (`put` when absent on a route where that is the default; `-` if none).
    pub action: &'a str,
    /// The secret path or policy name the request was about (empty if none).
    pub path: &'a str,
    /// `allow` or `deny` once authorisation ran, `none` if it did not get that far.
    pub decision: Decision,
    /// The HTTP status of the answer.
    pub status: u16,
    /// Time from arrival to the answer, in microseconds.
    pub latency_us: u64,
}

/// What authorisation decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It did not get that far (a malformed request, or Nexus not ready), or the route is
    /// open to anyone.
    #[default]
    None,
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// Why an audit line could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit log {destination}: {source}")]
pub struct AuditError {
    destination: String,
    source: std::io::Error,
}

impl AuditLog {
    /// Lines to this process's stdout.
    pub fn stdout() -> Self {
        AuditLog { sink: Sink::Stdout }
    }

    /// Lines appended to `path`, created 0600 if missing.
    pub fn file(path: &Path) -> Result<Self, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| AuditError {
                destination: path.display().to_string(),
                source,
            })?;
        Ok(AuditLog {
            sink: Sink::File {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
        })
    }

    /// `-` for stdout, otherwise a file.
    pub fn open(destination: &str) -> Result<Self, AuditError> {
        match destination {
            "-" => Ok(Self::stdout()),
            path => Self::file(Path::new(path)),
        }
    }

    /// Writes one line; returns once the kernel has it.
    pub fn write(&self, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError {
            destination: self.destination(),
            source: e.into(),
        })?;
        line.push(b'\n');
        let written = match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Sink::File { file, .. } => {
                // A poisoned lock only means another writer panicked mid-line; the file
                // itself is still fine to append to.
                let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
                file.write_all(&line)
            }
        };
        written.map_err(|source| AuditError {
            destination: self.destination(),
            source,
        })
    }

    /// Pushes every line written so far to stable storage (`fsync` of the file; stdout is
    /// flushed), for a shutdown: a line is the kernel's once [`write`](Self::write) returns,
    /// this makes it the disk's too.
    pub fn flush(&self) -> Result<(), AuditError> {
        let flushed = match &self.sink {
            Sink::Stdout => std::io::stdout().lock().flush(),
            Sink::File { file, .. } => file.lock().unwrap_or_else(|p| p.into_inner()).sync_all(),
        };
        flushed.map_err(|source| AuditError {
            destination: self.destination(),
            source,
        })
    }

    fn destination(&self) -> String {
        match &self.sink {
            Sink::Stdout => "stdout".to_owned(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }
}

/// `at` as the audit log's `time`: RFC 3339 UTC with microseconds.
pub fn timestamp(at: time::OffsetDateTime) -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::from(at)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> AuditRecord<'_> {
        AuditRecord {
            time: timestamp(
                time::OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(1_234_567),
            ),
            request_id: "r1",
            caller: "spiffe://td/app",
            route: "/v1/store/secrets",
            action: "get",
            path,
            decision: Decision::Allow,
            status: 200,
            latency_us: 42,
        }
    }

    #[test]
    fn lines_are_appended_as_json_to_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.to_str().expect("utf-8")).expect("open");
        log.write(&record("a")).expect("write");
        log.write(&record("b")).expect("write");
        // Reopening appends rather than truncating.
        AuditLog::file(&path)
            .expect("reopen")
            .write(&record("c"))
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let paths: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                assert_eq!(v["caller"], "spiffe://td/app");
                assert_eq!(v["status"], 200);
                assert_eq!(v["time"], "1970-01-01T00:00:01.234567Z");
                v["path"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(paths, ["a", "b", "c"]);
        log.flush().expect("fsync");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_destination() {
        let log = AuditLog::file(Path::new("/dev/full")).expect("open /dev/full");
        let error = log.write(&record("a")).expect_err("ENOSPC").to_string();
        assert!(error.contains("/dev/full"), "{error}");
    }
}
