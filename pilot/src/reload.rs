//! Telling a process that its file changed, for `spike render`: a signal (`HUP` by habit) to
//! a PID given on the command line or read from a PID file each time, so a restarted process
//! is found under its new PID.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Which process to signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This PID.
    Pid(i32),
    /// The PID written in this file.
    PidFile(PathBuf),
}

/// A signal and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// What to send.
    pub signal: Signal,
    /// To whom.
    pub target: Target,
}

impl Reload {
    /// Sends the signal; returns the PID it went to, or why it could not be sent.
    pub fn send(&self) -> Result<i32, String> {
        let pid = match &self.target {
            Target::Pid(pid) => *pid,
            Target::PidFile(file) => read_pid_file(file)?,
        };
        kill(Pid::from_raw(pid), self.signal)
            .map(|()| pid)
            .map_err(|e| format!("cannot send {} to process {pid}: {e}", self.signal))
    }
}

/// `--signal`: a name with or without `SIG`, in any case (`HUP`, `sighup`), or a number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let text = text.trim();
    let signal = match text.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().ok()
        }
    };
    signal.ok_or_else(|| format!("`{text}` is not a signal (e.g. HUP, USR1, TERM)"))
}

/// A PID as written in a PID file: a positive number, surrounding whitespace ignored.
/// Zero and negative numbers are refused: `kill` would signal whole process groups.
pub fn parse_pid(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err("it does not hold a process ID (a positive number)".into()),
    }
}

fn read_pid_file(file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read PID file {}: {e}", file.display()))?;
    parse_pid(&text).map_err(|e| format!("PID file {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        for text in ["HUP", "hup", "SIGHUP", "SigHup", " HUP ", "1"] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGHUP), "{text}");
        }
        assert_eq!(parse_signal("usr1"), Ok(Signal::SIGUSR1));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        for bad in ["", "NOPE", "SIG", "0", "-1", "999"] {
            let e = parse_signal(bad).err().unwrap_or_default();
            assert!(e.contains("is not a signal"), "{bad}: {e}");
        }
    }

    #[test]
    fn pids_must_be_positive() {
        assert_eq!(parse_pid("1234\n"), Ok(1234));
        assert_eq!(parse_pid("  7 "), Ok(7));
        for bad in ["", "0", "-1", "abc", "12 13", "99999999999"] {
            assert!(parse_pid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals_reach_a_process_by_pid_file() {
        // `sleep` ends on SIGTERM; the exit status says which signal reached it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id())).expect("write pid");
        let reload = Reload {
            signal: Signal::SIGTERM,
            target: Target::PidFile(pid_file),
        };
        let sent = reload.send();
        let status = child.wait().expect("wait");
        assert_eq!(sent, Ok(i32::try_from(child.id()).unwrap_or_default()));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
    }

    #[test]
    fn unreadable_pid_files_are_explained() {
        let reload = Reload {
            signal: Signal::SIGHUP,
            target: Target::PidFile("/nonexistent/app.pid".into()),
        };
        let e = reload.send().err().unwrap_or_default();
        assert!(
            e.contains("cannot read PID file /nonexistent/app.pid"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("p");
        std::fs::write(&file, "0").expect("write");
        let reload = Reload {
            signal: Signal::SIGHUP,
            target: Target::PidFile(file),
        };
        let e = reload.send().err().unwrap_or_default();
        assert!(e.contains("does not hold a process ID"), "{e}");
    }
}
