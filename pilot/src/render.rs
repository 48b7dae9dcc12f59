//! `spike render`: secrets rendered into a file for programs that read configuration files,
//! as Vault Agent templates and spiffe-helper do.
//!
//! The template is read and parsed once at start (a mistake fails at once, with its line).
//! Each round fetches the current version of every secret the template names, renders, and
//! replaces the output file atomically (mode 0600) only if the text changed; after a change
//! it can signal a process to reload. With `--watch`, rounds repeat every `--interval` until
//! SIGINT or SIGTERM; a failed round is reported on stderr and the old file stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{GlobalArgs, RenderArgs};
use crate::context::Session;
use crate::error::PilotError;
use crate::fetch::Secrets;
use crate::output::{Format, Output, structured};
use crate::reload::{Reload, Target};
use crate::template::Template;
use common_process::files;

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    /// The output file.
    pub out: PathBuf,
    /// Whether the file was (re)written.
    pub changed: bool,
    /// The process that was signalled, if any.
    pub signalled: Option<i32>,
}

/// Runs `spike render`.
pub async fn run(args: RenderArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let template = load(&args.template)?;
    let reload = reload_of(&args);
    let session = Session::connect(global).await?;
    let job = Job {
        session: &session,
        template: &template,
        out: &args.out,
        reload: reload.as_ref(),
    };
    if args.watch {
        job.watch(args.interval).await?;
        return Ok(Output::ok(String::new()));
    }
    let mut rendered = job.round().await?;
    job.notify(&mut rendered)
        .map_err(|e| PilotError::Local(format!("Wrote {}, but {e}", args.out.display())))?;
    let signal = reload.as_ref().map(|r| r.signal.as_str()).unwrap_or("");
    Ok(Output::ok(report(&rendered, signal, global.format)))
}

/// Reads and parses the template.
pub fn load(path: &Path) -> Result<Template, PilotError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PilotError::Local(format!("Cannot read template {}: {e}", path.display())))?;
    Template::parse(&text).map_err(|error| PilotError::Template {
        file: path.display().to_string(),
        error,
    })
}

fn reload_of(args: &RenderArgs) -> Option<Reload> {
    let target = match (args.pid, &args.pid_file) {
        (Some(pid), _) => Target::Pid(pid),
        (None, Some(file)) => Target::PidFile(file.clone()),
        (None, None) => return None,
    };
    args.signal.map(|signal| Reload { signal, target })
}

/// Everything a round needs.
struct Job<'a> {
    session: &'a Session,
    template: &'a Template,
    out: &'a Path,
    reload: Option<&'a Reload>,
}

impl Job<'_> {
    /// Fetch, render, write if changed.
    async fn round(&self) -> Result<Rendered, PilotError> {
        let secrets = Secrets::fetch(self.session, &self.template.paths()).await?;
        let text = self
            .template
            .render(|path, key| secrets.value(path, Some(key)))?;
        let changed = files::write_if_changed(self.out, text.as_bytes(), files::PRIVATE)
            .map_err(|e| PilotError::Local(format!("Cannot write {}: {e}", self.out.display())))?;
        Ok(Rendered {
            out: self.out.to_owned(),
            changed,
            signalled: None,
        })
    }

    /// After a change, signals the process if asked to.
    fn notify(&self, rendered: &mut Rendered) -> Result<(), String> {
        if let (true, Some(reload)) = (rendered.changed, self.reload) {
            rendered.signalled = Some(reload.send()?);
        }
        Ok(())
    }

    /// Rounds every `interval` until SIGINT or SIGTERM. Only setting up the signal handlers
    /// can fail; a failed round is reported and retried.
    async fn watch(&self, interval: Duration) -> Result<(), PilotError> {
        let handler = |e: std::io::Error| {
            PilotError::Local(format!("Cannot watch for SIGINT and SIGTERM: {e}"))
        };
        let mut interrupt = signal(SignalKind::interrupt()).map_err(handler)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(handler)?;
        let every = humantime::format_duration(interval);
        let signal = self.reload.map(|r| r.signal.as_str()).unwrap_or("");
        eprintln!(
            "Rendering {} every {every}; stop with Ctrl-C or SIGTERM.",
            self.out.display()
        );
        loop {
            // A stop signal also ends a round that is waiting for Nexus; writing the file is
            // synchronous, so it is never cut in half.
            tokio::select! {
                result = self.round() => match result {
                    Ok(mut rendered) if rendered.changed => match self.notify(&mut rendered) {
                        Ok(()) => eprint!("{}", human(&rendered, signal)),
                        // The file is new already. The signal is not retried (the content
                        // does not change again); the next change signals again.
                        Err(e) => eprintln!("Warning: wrote {}, but {e}", self.out.display()),
                    },
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "Error: {e} (retrying in {every}; {} is unchanged)",
                        self.out.display()
                    ),
                },
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        eprintln!("Stopped.");
        Ok(())
    }
}

/// A round for people, or its fields for scripts.
pub fn report(rendered: &Rendered, signal: &str, format: Format) -> String {
    structured(rendered, format).unwrap_or_else(|| human(rendered, signal))
}

fn human(rendered: &Rendered, signal: &str) -> String {
    let out = rendered.out.display();
    match (rendered.changed, rendered.signalled) {
        (false, _) => format!("{out} is up to date.\n"),
        (true, None) => format!("Wrote {out}.\n"),
        (true, Some(pid)) if signal.is_empty() => {
            format!("Wrote {out}; signalled process {pid}.\n")
        }
        (true, Some(pid)) => format!("Wrote {out}; sent {signal} to process {pid}.\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(changed: bool, signalled: Option<i32>) -> Rendered {
        Rendered {
            out: "/etc/app.conf".into(),
            changed,
            signalled,
        }
    }

    #[test]
    fn report_for_people() {
        assert_eq!(
            report(&rendered(true, None), "", Format::Human),
            "Wrote /etc/app.conf.\n"
        );
        assert_eq!(
            report(&rendered(true, Some(42)), "SIGHUP", Format::Human),
            "Wrote /etc/app.conf; sent SIGHUP to process 42.\n"
        );
        assert_eq!(
            report(&rendered(false, None), "SIGHUP", Format::Human),
            "/etc/app.conf is up to date.\n"
        );
    }

    #[test]
    fn report_for_scripts() {
        let want = serde_json::json!({"out": "/etc/app.conf", "changed": true, "signalled": 42});
        let json: serde_json::Value =
            serde_json::from_str(&report(&rendered(true, Some(42)), "SIGHUP", Format::Json))
                .expect("JSON");
        assert_eq!(json, want);
        let yaml: serde_json::Value =
            serde_norway::from_str(&report(&rendered(true, Some(42)), "", Format::Yaml))
                .expect("YAML");
        assert_eq!(yaml, want);
    }

    #[test]
    fn templates_are_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.tmpl");
        std::fs::write(&file, "a\n{{ secret \"p\" }}\n").expect("write");
        let text = load(&file).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with(&format!("Invalid template {}: line 2:", file.display())),
            "{text}"
        );
        let missing = load(&dir.path().join("none"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.starts_with("Cannot read template"), "{missing}");
        std::fs::write(&file, "k={{ secret \"p\" \"k\" }}\n").expect("write");
        assert!(load(&file).is_ok());
    }
}
