//! Writing files whole, with exactly the mode asked for: keys, certificates, recovery shards,
//! rendered secrets. Every binary writes its files through here.
//!
//! [`write_atomic`] replaces a file so that a reader sees either the old content or the new,
//! never a partial file: the new content goes to a temporary file in the same directory
//! (same filesystem, so the rename is atomic), is flushed to disk, and is renamed over the
//! target, and the rename is made durable. The mode is set exactly (not narrowed by the
//! umask, not inherited from a file being replaced). [`create_new`] writes a file that must
//! not exist yet.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Owner read and write, nothing for anyone else: the mode of anything secret.
pub const PRIVATE: u32 = 0o600;

/// How many temporary names to try before giving up (each is unique already; this only
/// covers leftovers of a crashed run with the same pid and time).
const TEMP_ATTEMPTS: u32 = 16;

/// Writes `content` to a new file at `path` with `mode`; fails if `path` exists.
pub fn create_new(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & PRIVATE)
        .open(path)?;
    let written = fill(&mut file, content, mode);
    if written.is_err() {
        // Leave no half-written shard behind.
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Replaces `path` with `content` atomically; the result has `mode`.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = directory_of(path);
    let (temp, mut file) = create_temp(path, &dir)?;
    let result = fill(&mut file, content, mode).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    // Make the rename itself durable. Some filesystems cannot sync a directory; the file is
    // in place either way, so that is not an error.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes `content` to `path` (atomically, with `mode`) unless the file already holds exactly
/// that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> io::Result<bool> {
    match std::fs::read(path) {
        Ok(current) if current == content => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_atomic(path, content, mode)?;
    Ok(true)
}

/// The directory holding `path` (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A fresh `.<name>.<pid>.<nanos>.tmp` beside `path`, created 0600 (widened, if asked, only
/// once [`fill`] sets the final mode).
fn create_temp(path: &Path, dir: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
        .to_string_lossy();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut last = io::Error::other("no temporary file could be created");
    for attempt in 0..TEMP_ATTEMPTS {
        let temp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            nanos + u128::from(attempt)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Sets the mode exactly (the umask may have taken bits away), writes and syncs.
fn fill(file: &mut File, content: &[u8], mode: u32) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_write_creates_0600_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("app.conf");
        write_atomic(&out, b"one", PRIVATE).expect("first write");
        assert_eq!(std::fs::read(&out).expect("read"), b"one");
        assert_eq!(mode(&out), 0o600);

        // A file that was readable by others becomes private when replaced.
        std::fs::set_permissions(&out, Permissions::from_mode(0o644)).expect("chmod");
        write_atomic(&out, b"two", PRIVATE).expect("second write");
        assert_eq!(std::fs::read(&out).expect("read"), b"two");
        assert_eq!(mode(&out), 0o600);
        assert_eq!(entries(dir.path()), ["app.conf"], "no temporary file left");
    }

    #[test]
    fn atomic_replace_keeps_readers_whole() {
        // A reader that opened the old file keeps reading the old content in full: the
        // rename swaps directory entries and never touches the old file's bytes.
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("f");
        write_atomic(&out, b"old content", 0o644).expect("write");
        let before = std::fs::File::open(&out).expect("open");
        let inode = std::os::unix::fs::MetadataExt::ino(&before.metadata().expect("meta"));
        write_atomic(&out, b"new", 0o644).expect("replace");
        let mut old = String::new();
        std::io::Read::read_to_string(&mut &before, &mut old).expect("read old");
        assert_eq!(old, "old content");
        let after = std::fs::metadata(&out).expect("meta");
        assert_ne!(std::os::unix::fs::MetadataExt::ino(&after), inode);
        assert_eq!(std::fs::read(&out).expect("read"), b"new");
        assert_eq!(mode(&out), 0o644, "a public file gets exactly its mode");
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("missing-dir").join("f");
        assert!(write_atomic(&out, b"x", PRIVATE).is_err());
        // A directory in the way of the rename: the temp file is removed again.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).expect("mkdir");
        std::fs::write(blocked.join("inside"), b"keep").expect("write");
        assert!(write_atomic(&blocked, b"x", PRIVATE).is_err());
        assert_eq!(entries(dir.path()), ["blocked"]);
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("f");
        assert!(write_if_changed(&out, b"a", PRIVATE).expect("new file"));
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&out).expect("m"));
        assert!(!write_if_changed(&out, b"a", PRIVATE).expect("same"));
        let same = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&out).expect("m"));
        assert_eq!(inode, same, "not replaced");
        assert!(write_if_changed(&out, b"b", PRIVATE).expect("changed"));
        assert_eq!(std::fs::read(&out).expect("read"), b"b");
    }

    #[test]
    fn bare_file_names_use_the_current_directory() {
        assert_eq!(directory_of(Path::new("f")), PathBuf::from("."));
        assert_eq!(directory_of(Path::new("/a/f")), PathBuf::from("/a"));
    }

    #[test]
    fn create_new_refuses_existing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("s");
        create_new(&out, b"shard", PRIVATE).expect("create");
        assert_eq!(mode(&out), 0o600);
        let again = create_new(&out, b"other", PRIVATE).map_err(|e| e.kind());
        assert_eq!(again, Err(io::ErrorKind::AlreadyExists));
        assert_eq!(std::fs::read(&out).expect("read"), b"shard");
    }
}
