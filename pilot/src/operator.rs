//! `spike operator recover|restore`: SPIKE's break-glass procedure; `rotate`, `seal` and
//! `unseal`, the superuser's.
//!
//! `recover` (recover role, Nexus ready) saves every shard of the root key to its own file,
//! readable only by the user, for safekeeping offline. `restore` (restore role, Nexus
//! sealed) hands one of those shards back per call, until Nexus has enough to rebuild the
//! root key. Shard values never reach stdout or stderr.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};

use nexus_api::model::{RestoreResponse, SealState, StatusResponse};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{GlobalArgs, OperatorCommand, RecoverArgs, RekeyArgs};
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::input;
use crate::output::{Format, Output, structured};
use crate::shard::{self, RecoveryShard, ShardError};
use common_process::files;

/// Where `recover` writes without `--dir`, under `$HOME`.
pub const DEFAULT_DIR: &str = ".spike/recover";

/// Longest line read for a shard; a real one is under 80 bytes.
const MAX_LINE: u64 = 1024;

/// Runs a `spike operator` command.
pub async fn run(command: OperatorCommand, global: &GlobalArgs) -> Result<Output, PilotError> {
    match command {
        OperatorCommand::Recover(args) => recover(args, global).await,
        OperatorCommand::Restore => restore(global).await,
        OperatorCommand::Rotate => rotate(global).await,
        OperatorCommand::Seal => seal(global).await,
        OperatorCommand::Unseal => unseal(global).await,
        OperatorCommand::Rekey(args) => rekey(args, global).await,
    }
}

async fn rekey(args: RekeyArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let request = nexus_api::model::RekeyRequest {
        keepers: args.keepers,
        threshold: args.threshold,
        new_root_key: args.new_root_key,
    };
    let rekeyed = session
        .client()
        .rekey(&request)
        .await
        .map_err(session.fail(Operation::Rekey))?;
    Ok(Output::ok(render_rekeyed(&rekeyed, global.format)))
}

/// What a rekey did: for people, or the answer in the API's shape.
pub fn render_rekeyed(rekeyed: &nexus_api::model::RekeyResponse, format: Format) -> String {
    if let Some(text) = structured(rekeyed, format) {
        return text;
    }
    let mut text = format!(
        "Rekeyed: the root key is now split {} of {} keepers (keeper set generation {}).\n",
        rekeyed.threshold, rekeyed.keepers, rekeyed.generation
    );
    if rekeyed.new_root_key {
        text.push_str(&format!(
            "The root key was replaced too: {} data keys re-wrapped.\n",
            rekeyed.rewrapped
        ));
    }
    if !rekeyed.not_forgotten.is_empty() {
        text.push_str(&format!(
            "These keepers did not confirm forgetting their older shards (they do once restarted): {}\n",
            rekeyed.not_forgotten.join(", ")
        ));
    }
    text.push_str(
        "Recovery shards saved before no longer work: run `spike operator recover` again and store the new files offline.\n",
    );
    text
}

async fn seal(global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let status = session
        .client()
        .seal()
        .await
        .map_err(session.fail(Operation::Seal))?;
    Ok(Output::ok(render_sealed(&status, global.format)))
}

async fn unseal(global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let status = session
        .client()
        .unseal()
        .await
        .map_err(session.fail(Operation::Unseal))?;
    Ok(Output {
        stdout: render_unsealed(&status, global.format).into_bytes(),
        code: crate::status::exit_code(&status),
    })
}

/// What a seal did: for people, or the status in the API's shape.
pub fn render_sealed(status: &StatusResponse, format: Format) -> String {
    if let Some(text) = structured(status, format) {
        return text;
    }
    let who = status
        .operator_seal
        .as_ref()
        .map(|seal| format!(" by {} at {}", seal.by, seal.at))
        .unwrap_or_default();
    format!(
        "Nexus is sealed{who}: its root key is out of memory, and every data request is refused \
         until `spike operator unseal`, after a restart too. Other Nexus replicas on the same \
         database are sealed as well.\n"
    )
}

/// What an unseal did: for people, or the status in the API's shape.
pub fn render_unsealed(status: &StatusResponse, format: Format) -> String {
    if let Some(text) = structured(status, format) {
        return text;
    }
    if status.state == SealState::Ready {
        "Nexus is unsealed and ready: its root key is back from the keepers.\n".to_owned()
    } else {
        format!(
            "The seal is lifted, but Nexus is not ready yet: {}\nIt keeps asking its keepers; watch `spike status`.\n",
            status.message
        )
    }
}

async fn rotate(global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let rotated = session
        .client()
        .rotate()
        .await
        .map_err(session.fail(Operation::Rotate))?;
    if let Some(text) = crate::output::structured(&rotated, global.format) {
        return Ok(Output::ok(text));
    }
    Ok(Output::ok(format!(
        "Root key rotated: {} data keys re-wrapped in {} ms; keepers get their new shards now.\n\
         Recovery shards saved before no longer work: run `spike operator recover` again.\n",
        rotated.rewrapped, rotated.duration_ms
    )))
}

async fn recover(args: RecoverArgs, global: &GlobalArgs) -> Result<Output, PilotError> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => default_dir(std::env::var_os("HOME"))?,
    };
    // Before any call: no point taking shards out of Nexus that cannot be written.
    if !args.force {
        refuse_existing(&dir)?;
    }
    let session = Session::connect(global).await?;
    let answer = session
        .client()
        .recover()
        .await
        .map_err(session.fail(Operation::Recover))?;
    let shards = answer
        .shards
        .iter()
        .map(|(id, bytes)| RecoveryShard::new(*id, bytes))
        .collect::<Result<Vec<_>, ShardError>>()?;
    drop(answer);
    if shards.is_empty() {
        return Err(PilotError::Refused(
            "Nexus returned no recovery shards; nothing was written.".into(),
        ));
    }
    let saved = save(&dir, &shards, args.force)?;
    Ok(Output::ok(render_saved(&dir, &saved, global.format)))
}

async fn restore(global: &GlobalArgs) -> Result<Output, PilotError> {
    // Read and check the shard before any call, so a typo costs no round trip.
    let shard = read_shard()?;
    let session = Session::connect(global).await?;
    let progress = session
        .client()
        .restore(shard.id(), shard.bytes())
        .await
        .map_err(session.fail(Operation::Restore))?;
    Ok(Output::ok(render_restore(&progress, global.format)))
}

/// `$HOME/.spike/recover`.
pub fn default_dir(home: Option<std::ffi::OsString>) -> Result<PathBuf, PilotError> {
    match home {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(DEFAULT_DIR)),
        _ => Err(PilotError::Local(
            "HOME is not set, so there is no default recovery directory; pass --dir".into(),
        )),
    }
}

/// Refuses a directory that already holds recovery files: they may be the only copy of an
/// earlier set (`--force` replaces them).
pub fn refuse_existing(dir: &Path) -> Result<(), PilotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(PilotError::Local(format!(
                "Cannot read recovery directory {}: {e}",
                dir.display()
            )));
        }
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| shard::is_file_name(name))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(PilotError::Local(format!(
        "{} already holds recovery files ({}); nothing was taken from Nexus. Move them somewhere safe first, or pass --force to replace them.",
        dir.display(),
        found.join(", ")
    )))
}

/// Writes each shard to `dir/spike.recovery.<id>.txt` (mode 0600; the directory, if new,
/// 0700). Without `force`, an existing file is an error and is left alone.
pub fn save(
    dir: &Path,
    shards: &[RecoveryShard],
    force: bool,
) -> Result<Vec<(u8, PathBuf)>, PilotError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            PilotError::Local(format!(
                "Cannot create recovery directory {}: {e}",
                dir.display()
            ))
        })?;
    let mut saved = Vec::with_capacity(shards.len());
    for shard in shards {
        let path = dir.join(shard.file_name());
        let line = shard.to_line();
        let written = if force {
            files::write_atomic(&path, line.as_bytes(), files::PRIVATE)
        } else {
            files::create_new(&path, line.as_bytes(), files::PRIVATE)
        };
        written.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (pass --force to replace it)"
            } else {
                ""
            };
            PilotError::Local(format!(
                "Cannot write recovery file {}: {e}{hint}. Files written so far: {}",
                path.display(),
                list_or_none(&saved)
            ))
        })?;
        saved.push((shard.id(), path));
    }
    Ok(saved)
}

fn list_or_none(saved: &[(u8, PathBuf)]) -> String {
    if saved.is_empty() {
        return "none".into();
    }
    saved
        .iter()
        .map(|(_, p)| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One shard: typed on the terminal without echo, or one line from a pipe.
fn read_shard() -> Result<RecoveryShard, PilotError> {
    // Sized so reading never reallocates (which would leave an unzeroized copy).
    let mut line = Zeroizing::new(String::with_capacity(2 * MAX_LINE as usize));
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        input::read_hidden_line("Recovery shard (spike:<id>:<hex>, not echoed): ", &mut line)
            .map_err(|e| PilotError::Local(format!("Cannot read the shard: {e}")))?;
    } else {
        read_line(&mut stdin.lock(), &mut line)?;
    }
    Ok(line.parse()?)
}

/// Reads one line (at most [`MAX_LINE`] bytes) into `line`.
pub fn read_line(reader: &mut impl BufRead, line: &mut String) -> Result<(), PilotError> {
    reader
        .take(MAX_LINE)
        .read_line(line)
        .map_err(|e| PilotError::Local(format!("Cannot read the shard from stdin: {e}")))?;
    Ok(())
}

/// Where the shards went, with what to do next; for scripts only ids and paths.
pub fn render_saved(dir: &Path, saved: &[(u8, PathBuf)], format: Format) -> String {
    #[derive(Serialize)]
    struct Saved<'a> {
        id: u8,
        file: &'a Path,
    }
    #[derive(Serialize)]
    struct Recovered<'a> {
        dir: &'a Path,
        shards: Vec<Saved<'a>>,
    }
    let view = Recovered {
        dir,
        shards: saved
            .iter()
            .map(|(id, file)| Saved { id: *id, file })
            .collect(),
    };
    if let Some(text) = structured(&view, format) {
        return text;
    }
    let mut out = format!(
        "Wrote {} recovery shards to {}:\n",
        saved.len(),
        dir.display()
    );
    for (_, file) in saved {
        out.push_str(&format!("  {}\n", file.display()));
    }
    out.push_str(GUIDANCE);
    out
}

const GUIDANCE: &str = "
Each file holds one shard of Nexus's root key and is readable only by you (mode 0600).
  1. Store them apart from each other and offline: for example each on its own encrypted
     drive, or printed, in separate safes. Never keep them all in one place.
  2. Then securely erase them from this directory.
Any threshold of them (see `spike status`) restores Nexus with `spike operator restore`
if its keepers lose their shards. Whoever holds that many can rebuild the root key.
";

/// Progress of a restore: SPIKE's wording, or the API's shape.
pub fn render_restore(progress: &RestoreResponse, format: Format) -> String {
    structured(progress, format).unwrap_or_else(|| {
        if progress.restored {
            "SPIKE is now restored and ready to use.\n".to_owned()
        } else {
            format!(
                "Shards collected: {}, remaining: {}\nRun `spike operator restore` again with another shard.\n",
                progress.collected, progress.remaining
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";

    fn shards(ids: &[u8]) -> Vec<RecoveryShard> {
        ids.iter()
            .map(|id| RecoveryShard::new(*id, &[*id; 32]).expect("valid shard"))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn default_dir_is_under_home() {
        let dir = default_dir(Some("/home/op".into())).expect("HOME set");
        assert_eq!(dir, PathBuf::from("/home/op/.spike/recover"));
        for home in [None, Some(std::ffi::OsString::new())] {
            let text = default_dir(home).err().map(|e| e.to_string());
            assert!(text.is_some_and(|t| t.contains("--dir")));
        }
    }

    #[test]
    fn shards_are_saved_privately() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("new").join("recover");
        let saved = save(&dir, &shards(&[1, 2, 3]), false).expect("saved");
        assert_eq!(
            saved.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(mode(&dir), 0o700);
        let first = dir.join("spike.recovery.1.txt");
        assert_eq!(saved[0].1, first);
        assert_eq!(mode(&first), 0o600);
        let text = std::fs::read_to_string(&first).expect("read");
        assert_eq!(text, format!("spike:1:{}\n", "01".repeat(32)));
        let back: RecoveryShard = text.parse().expect("round trip");
        assert_eq!(back.bytes(), &[1; 32]);
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path();
        assert!(refuse_existing(&dir.join("absent")).is_ok());
        std::fs::write(dir.join("notes.txt"), "unrelated").expect("write");
        assert!(refuse_existing(dir).is_ok());
        save(dir, &shards(&[1, 2]), false).expect("first save");

        let text = refuse_existing(dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("spike.recovery.1.txt, spike.recovery.2.txt") && text.contains("--force"),
            "{text}"
        );
        let text = save(dir, &shards(&[3, 2]), false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("spike.recovery.2.txt") && text.contains("--force"),
            "{text}"
        );
        assert!(
            text.contains("spike.recovery.3.txt"),
            "lists what was written: {text}"
        );
        let kept = std::fs::read_to_string(dir.join("spike.recovery.2.txt")).expect("read");
        assert!(kept.starts_with("spike:2:0202"), "{kept}");

        std::fs::set_permissions(
            dir.join("spike.recovery.2.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let other = [RecoveryShard::new(2, &[9; 32]).expect("valid shard")];
        save(dir, &other, true).expect("forced");
        let replaced = std::fs::read_to_string(dir.join("spike.recovery.2.txt")).expect("read");
        assert!(replaced.starts_with("spike:2:0909"), "{replaced}");
        assert_eq!(mode(&dir.join("spike.recovery.2.txt")), 0o600);
    }

    #[test]
    fn saved_output_shows_paths_never_shards() {
        let dir = Path::new("/home/op/.spike/recover");
        let saved = vec![
            (1, dir.join("spike.recovery.1.txt")),
            (2, dir.join("spike.recovery.2.txt")),
        ];
        let human = render_saved(dir, &saved, Format::Human);
        assert!(
            human.starts_with(
                "Wrote 2 recovery shards to /home/op/.spike/recover:\n  /home/op/.spike/recover/spike.recovery.1.txt\n"
            ),
            "{human}"
        );
        assert!(
            human.contains("offline") && human.contains("apart"),
            "{human}"
        );
        let want = serde_json::json!({
            "dir": "/home/op/.spike/recover",
            "shards": [
                {"id": 1, "file": "/home/op/.spike/recover/spike.recovery.1.txt"},
                {"id": 2, "file": "/home/op/.spike/recover/spike.recovery.2.txt"},
            ],
        });
        let json: serde_json::Value =
            serde_json::from_str(&render_saved(dir, &saved, Format::Json)).expect("JSON");
        assert_eq!(json, want);
        let yaml: serde_json::Value =
            serde_norway::from_str(&render_saved(dir, &saved, Format::Yaml)).expect("YAML");
        assert_eq!(yaml, want);
    }

    #[test]
    fn one_line_is_read_from_a_pipe() {
        let input = format!("spike:2:{HEX}\nspike:3:{HEX}\n");
        let mut reader = input.as_bytes();
        let mut line = String::new();
        read_line(&mut reader, &mut line).expect("read");
        let shard: RecoveryShard = line.parse().expect("valid");
        assert_eq!(shard.id(), 2);

        let long = "x".repeat(5000);
        let mut line = String::new();
        read_line(&mut long.as_bytes(), &mut line).expect("read");
        assert_eq!(line.len(), 1024);
        let text = line
            .parse::<RecoveryShard>()
            .err()
            .map(|e| PilotError::from(e).to_string())
            .unwrap_or_default();
        assert!(
            text.starts_with("Invalid recovery shard:") && !text.contains("xxx"),
            "{text}"
        );

        let mut line = String::new();
        let binary = read_line(&mut &[0xff, 0xfe, b'\n'][..], &mut line);
        assert!(binary.is_err());
    }

    fn status(state: SealState, message: &str, sealed: bool) -> StatusResponse {
        StatusResponse {
            initialized: true,
            state,
            keepers: nexus_api::model::KeeperStatus {
                total: 3,
                reachable: 3,
                threshold: 2,
                generation: 0,
            },
            message: message.into(),
            operator_seal: sealed.then(|| nexus_api::model::OperatorSeal {
                by: "spiffe://example.org/spike/pilot/role/superuser".into(),
                at: "2026-12-06T08:00:00.000Z".into(),
            }),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn seal_and_unseal_say_who_and_what_follows() {
        let sealed = status(SealState::Sealed, "sealed by an operator", true);
        let text = render_sealed(&sealed, Format::Human);
        assert!(
            text.starts_with(
                "Nexus is sealed by spiffe://example.org/spike/pilot/role/superuser at 2026-12-06T08:00:00.000Z: "
            ) && text.contains("spike operator unseal"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_sealed(&sealed, Format::Json)).expect("JSON");
        assert_eq!(json["operatorSeal"]["at"], "2026-12-06T08:00:00.000Z");
        assert_eq!(json["state"], "sealed");

        let ready = render_unsealed(&status(SealState::Ready, "", false), Format::Human);
        assert!(ready.starts_with("Nexus is unsealed and ready"), "{ready}");
        let waiting = status(
            SealState::Sealed,
            "sealed: 1 of 3 keepers returned a shard, 2 needed",
            false,
        );
        let text = render_unsealed(&waiting, Format::Human);
        assert!(
            text.contains("not ready yet: sealed: 1 of 3 keepers returned a shard"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_unsealed(&waiting, Format::Json)).expect("JSON");
        assert!(json.get("operatorSeal").is_none(), "{json}");
    }

    #[test]
    fn restore_progress() {
        let partial = RestoreResponse {
            collected: 1,
            remaining: 2,
            restored: false,
        };
        let text = render_restore(&partial, Format::Human);
        assert!(
            text.starts_with("Shards collected: 1, remaining: 2\n"),
            "{text}"
        );
        let done = RestoreResponse {
            collected: 3,
            remaining: 0,
            restored: true,
        };
        let text = render_restore(&done, Format::Human);
        assert!(text.starts_with("SPIKE is now restored"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_restore(&partial, Format::Json)).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"collected": 1, "remaining": 2, "restored": false})
        );
        let yaml: serde_json::Value =
            serde_norway::from_str(&render_restore(&done, Format::Yaml)).expect("YAML");
        assert_eq!(
            yaml,
            serde_json::json!({"collected": 3, "remaining": 0, "restored": true})
        );
    }

    #[test]
    fn a_rekey_says_the_recovery_shards_must_be_exported_again() {
        let mut rekeyed = nexus_api::model::RekeyResponse {
            generation: 1,
            keepers: 4,
            threshold: 2,
            recovery_shards_stale: true,
            ..Default::default()
        };
        let human = render_rekeyed(&rekeyed, Format::Human);
        assert!(
            human.starts_with(
                "Rekeyed: the root key is now split 2 of 4 keepers (keeper set generation 1).\n"
            ),
            "{human}"
        );
        assert!(
            human.contains("run `spike operator recover` again"),
            "{human}"
        );
        assert!(!human.contains("replaced") && !human.contains("did not confirm"));
        rekeyed.new_root_key = true;
        rekeyed.rewrapped = 7;
        rekeyed.not_forgotten = vec!["https://old:1".into()];
        let human = render_rekeyed(&rekeyed, Format::Human);
        assert!(human.contains("7 data keys re-wrapped"), "{human}");
        assert!(
            human.contains("forgetting their older shards (they do once restarted): https://old:1")
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_rekeyed(&rekeyed, Format::Json)).expect("JSON");
        assert_eq!(json["recoveryShardsStale"], true);
        assert_eq!(json["notForgotten"][0], "https://old:1");
    }
}
