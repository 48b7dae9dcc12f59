//! File-system helpers for the CA files: a private data directory and atomic writes.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::CaError;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist. An existing
/// directory is left as it is.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), CaError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CaError::Io {
            action: "cannot use data directory",
            path: dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("cannot create data directory", dir)),
        Err(e) => Err(io_err("cannot access data directory", dir)(e)),
    }
}

/// Whether `path` exists (errors other than "not found" are reported).
pub(super) fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(io_err("cannot access", path))
}

/// Reads a UTF-8 file.
pub(super) fn read_string(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(io_err("cannot read", path))
}

/// Logs a warning when a key file is readable or writable by group or others.
pub(super) fn warn_if_not_private(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "CA private key file is accessible by group or others; it should be mode 0600"
            );
        }
    }
}

/// Writes `contents` to `path` atomically with exactly `mode` (see
/// [`common_process::files::write_atomic`]). Unlike that function, a directory that cannot be
/// synced is an error here: the CA's rotation steps are told apart by which files exist, so
/// a rename must be durable before the next step.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    common_process::files::write_atomic(path, contents, mode)
        .map_err(io_err("cannot write", path))?;
    sync_parent(path)
}

/// Renames `from` to `to` (replacing `to`) and fsyncs the directory, so the rename survives a
/// crash.
pub(super) fn rename_durably(from: &Path, to: &Path) -> Result<(), CaError> {
    fs::rename(from, to).map_err(io_err("cannot rename to", to))?;
    sync_parent(to)
}

/// Removes `path` if it exists.
pub(super) fn remove_if_exists(path: &Path) -> Result<(), CaError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path)(e)),
    }
}

fn sync_parent(path: &Path) -> Result<(), CaError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync directory", dir))
}
