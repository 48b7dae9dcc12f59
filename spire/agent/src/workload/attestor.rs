//! Unix workload attestation: who is calling the Workload API socket?
//!
//! The kernel tells us the caller's pid/uid/gid (`SO_PEERCRED`, taken when the caller
//! connected); everything else comes from `/proc/<pid>`. The selectors match SPIRE's `unix`
//! workload attestor: `uid`, `user`, `gid`, `group`, `supplementary_gid`,
//! `supplementary_group`, `path` and `sha256`.
//!
//! # PID reuse
//!
//! A pid is only a number: the caller may exit while we look at it and the kernel may hand its
//! pid to an unrelated process, whose `/proc` entries we would then read. Every file is
//! therefore read relative to one open handle on the `/proc/<pid>` directory: the kernel binds
//! that handle to the process it named when it was opened, so once that process has exited
//! and been reaped, reads through it fail (mapped to [`AttestError::CallerGone`]) instead of
//! describing a newcomer, whatever its pid. (SPIRE's peertracker also compares the process
//! start time before and after; through a bound handle both reads would see the same process,
//! so that second `stat` read would check nothing more.) A process that exited but was not
//! reaped (a zombie) is refused by its state in `status`, and if it dies after that read, by
//! `/proc/<pid>/exe`, which a zombie no longer has. What no check on our side can catch is a
//! caller that exited and whose pid was reused *before* we opened the handle; the caller of
//! [`UnixAttestor::attest`] should only trust the result while the connection is still open.
//!
//! `status` is read once: its uid must be the peer's (`SO_PEERCRED`, taken at connect time).
//! A caller that changes its uid after that read could as well change it right after receiving
//! its SVID, so reading it again would prove nothing the first read did not.
//!
//! Missing selectors only make fewer registration entries match (an entry needs all its
//! selectors), so when the executable cannot be inspected (permissions, oversized binary,
//! non-UTF-8 path) we skip `path`/`sha256` with a warning instead of failing the call.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Group, Uid, User};
use sha2::{Digest, Sha256};
use spire_proto::server::Selector;
use tracing::warn;

/// Selector type produced by this attestor.
const SELECTOR_TYPE: &str = "unix";
/// How many executable digests we remember.
const CACHE_CAPACITY: usize = 256;
/// What the kernel appends to `/proc/<pid>/exe` when the file was unlinked or replaced.
const DELETED_SUFFIX: &str = " (deleted)";

/// The peer credentials of a Workload API connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Why a caller could not be attested.
#[derive(thiserror::Error, Debug)]
pub enum AttestError {
    #[error("the peer credentials carry no pid")]
    NoPid,
    /// The process exited, its pid was reused, or it is no longer the process (uid) that
    /// connected.
    #[error("the caller (pid {pid}) exited or its pid was reused")]
    CallerGone { pid: i32 },
    #[error("cannot read {what} of pid {pid}: {source}")]
    Proc {
        pid: i32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("malformed {what} for pid {pid}")]
    Malformed { pid: i32, what: String },
}

/// Identity of an executable's content, from `fstat` on the opened file. `st_ctime` is part
/// of it because, unlike `st_mtime`, no unprivileged call can set it back after a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

/// Bounded digest cache, evicting the oldest entry first.
#[derive(Default)]
struct HashCache {
    digests: HashMap<FileKey, String>,
    order: VecDeque<FileKey>,
}

impl HashCache {
    fn get(&self, key: &FileKey) -> Option<String> {
        self.digests.get(key).cloned()
    }

    fn insert(&mut self, key: FileKey, digest: String) {
        if self.digests.insert(key, digest).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > CACHE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.digests.remove(&old);
            }
        }
    }
}

/// What we need from `/proc/<pid>/status`.
#[derive(Debug, PartialEq, Eq)]
struct ProcStatus {
    /// The state letter: `R`, `S`, ..., `Z` for a zombie.
    state: char,
    euid: u32,
    egid: u32,
    groups: Vec<u32>,
}

/// Attests Workload API callers from the kernel's view of them. Cheap to share (`Send + Sync`).
pub struct UnixAttestor {
    /// Executables larger than this are not hashed; 0 means no limit (SPIRE's default).
    workload_size_limit: u64,
    /// Hashing a tens-of-MB binary on every Workload API call would make each call slow, so
    /// digests are remembered per file version (see [`FileKey`]).
    cache: Mutex<HashCache>,
    /// How many times a file was actually hashed (cache misses).
    #[cfg(test)]
    hashed: std::sync::atomic::AtomicUsize,
}

impl UnixAttestor {
    pub fn new(workload_size_limit: u64) -> Self {
        UnixAttestor {
            workload_size_limit,
            cache: Mutex::new(HashCache::default()),
            #[cfg(test)]
            hashed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Returns the caller's `unix` selectors.
    ///
    /// Blocking (does file I/O and user/group lookups); callers run it in
    /// `tokio::task::spawn_blocking`.
    pub fn attest(&self, caller: Caller) -> Result<Vec<Selector>, AttestError> {
        let pid = caller.pid;
        if pid <= 0 {
            return Err(AttestError::NoPid);
        }
        let dir =
            File::open(format!("/proc/{pid}")).map_err(|e| proc_err(pid, "/proc entry", e))?;
        let status = read_status(&dir, pid)?;
        if matches!(status.state, 'Z' | 'X' | 'x') {
            return Err(AttestError::CallerGone { pid });
        }
        if status.euid != caller.uid {
            warn!(
                pid,
                peer_uid = caller.uid,
                proc_uid = status.euid,
                "caller uid differs from /proc"
            );
            return Err(AttestError::CallerGone { pid });
        }

        let mut selectors = Vec::new();
        let mut push = |value: String| match Selector::new(SELECTOR_TYPE, &value) {
            Ok(s) => selectors.push(s),
            Err(e) => warn!(pid, error = %e, "skipping invalid selector"),
        };
        push(format!("uid:{}", status.euid));
        if let Some(name) = user_name(status.euid) {
            push(format!("user:{name}"));
        }
        push(format!("gid:{}", status.egid));
        if let Some(name) = group_name(status.egid) {
            push(format!("group:{name}"));
        }
        for &gid in &status.groups {
            push(format!("supplementary_gid:{gid}"));
            if let Some(name) = group_name(gid) {
                push(format!("supplementary_group:{name}"));
            }
        }
        if let Some(path) = self.exe_path(&dir, pid)? {
            push(format!("path:{path}"));
        }
        if let Some(digest) = self.exe_digest(&dir, pid)? {
            push(format!("sha256:{digest}"));
        }
        Ok(selectors)
    }

    /// The executable's path (`readlink /proc/<pid>/exe`), without the " (deleted)" marker.
    fn exe_path(&self, dir: &File, pid: i32) -> Result<Option<String>, AttestError> {
        let target = match readlinkat(dir.as_fd(), "exe") {
            Ok(target) => target,
            Err(e) => return skip_exe(pid, "executable path", e.into()),
        };
        let Some(target) = target.to_str() else {
            warn!(pid, path = ?target, "executable path is not UTF-8; no path selector");
            return Ok(None);
        };
        Ok(Some(
            target
                .strip_suffix(DELETED_SUFFIX)
                .unwrap_or(target)
                .to_owned(),
        ))
    }

    /// Hex SHA-256 of the executable. It is read through `/proc/<pid>/exe`, which opens the
    /// file the process actually runs even if its path was since unlinked or replaced.
    fn exe_digest(&self, dir: &File, pid: i32) -> Result<Option<String>, AttestError> {
        let mut file = match open_at(dir, "exe") {
            Ok(file) => file,
            Err(e) => return skip_exe(pid, "executable", e),
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return skip_exe(pid, "executable", e),
        };
        let key = FileKey::of(&meta);
        if let Some(digest) = self.lock_cache().get(&key) {
            return Ok(Some(digest));
        }
        if self.workload_size_limit > 0 && meta.size() > self.workload_size_limit {
            warn!(
                pid,
                size = meta.size(),
                limit = self.workload_size_limit,
                "executable exceeds workload_size_limit; no sha256 selector"
            );
            return Ok(None);
        }

        #[cfg(test)]
        self.hashed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return skip_exe(pid, "executable", e),
            }
        }
        // A file rewritten while we read it would give a digest of neither version.
        match file.metadata() {
            Ok(now) if FileKey::of(&now) == key => {}
            _ => {
                warn!(pid, "executable changed while hashing; no sha256 selector");
                return Ok(None);
            }
        }
        let digest = hex::encode(hasher.finalize());
        self.lock_cache().insert(key, digest.clone());
        Ok(Some(digest))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashCache> {
        // The cache holds no invariant a panicking holder could break.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handles a failure to inspect the executable: the caller vanished → `CallerGone`;
/// otherwise (e.g. EACCES when the agent may not ptrace-read the caller) skip the selector.
fn skip_exe<T>(pid: i32, what: &str, e: io::Error) -> Result<Option<T>, AttestError> {
    if is_gone(&e) {
        return Err(AttestError::CallerGone { pid });
    }
    warn!(pid, error = %e, "cannot read {what}; skipping its selector");
    Ok(None)
}

/// ENOENT/ESRCH from `/proc/<pid>` mean the process (as we knew it) no longer exists.
fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == Errno::ENOENT as i32 || code == Errno::ESRCH as i32)
}

fn proc_err(pid: i32, what: &str, source: io::Error) -> AttestError {
    if is_gone(&source) {
        AttestError::CallerGone { pid }
    } else {
        AttestError::Proc {
            pid,
            what: what.to_owned(),
            source,
        }
    }
}

/// Opens `name` inside the `/proc/<pid>` directory handle.
fn open_at(dir: &File, name: &str) -> io::Result<File> {
    let fd = openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

fn read_proc_file(dir: &File, pid: i32, name: &str) -> Result<String, AttestError> {
    let mut text = String::new();
    open_at(dir, name)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| proc_err(pid, name, e))?;
    Ok(text)
}

fn read_status(dir: &File, pid: i32) -> Result<ProcStatus, AttestError> {
    parse_status(&read_proc_file(dir, pid, "status")?).ok_or_else(|| AttestError::Malformed {
        pid,
        what: "/proc/<pid>/status".into(),
    })
}

/// Parses the `State:`, `Uid:`, `Gid:` (second field: effective) and `Groups:` lines of
/// `/proc/<pid>/status`.
fn parse_status(text: &str) -> Option<ProcStatus> {
    let (mut state, mut euid, mut egid, mut groups) = (None, None, None, None);
    for line in text.lines() {
        let Some((name, values)) = line.split_once(':') else {
            continue;
        };
        if name == "State" {
            state = values.trim_start().chars().next();
            continue;
        }
        let mut values = values.split_whitespace().map(str::parse::<u32>);
        match name {
            "Uid" => euid = Some(values.nth(1)?.ok()?),
            "Gid" => egid = Some(values.nth(1)?.ok()?),
            "Groups" => {
                let mut list: Vec<u32> = values.collect::<Result<_, _>>().ok()?;
                let mut seen = std::collections::HashSet::new();
                list.retain(|g| seen.insert(*g));
                groups = Some(list);
            }
            _ => {}
        }
    }
    Some(ProcStatus {
        state: state?,
        euid: euid?,
        egid: egid?,
        groups: groups.unwrap_or_default(),
    })
}

fn user_name(uid: u32) -> Option<String> {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(user) => user.map(|u| u.name),
        Err(e) => {
            warn!(uid, error = %e, "user lookup failed; no user selector");
            None
        }
    }
}

fn group_name(gid: u32) -> Option<String> {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(group) => group.map(|g| g.name),
        Err(e) => {
            warn!(gid, error = %e, "group lookup failed; no group selector");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::Ordering;

    fn me() -> Caller {
        Caller {
            pid: std::process::id() as i32,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn values(selectors: &[Selector], prefix: &str) -> Vec<String> {
        assert!(selectors.iter().all(|s| s.r#type == "unix"));
        selectors
            .iter()
            .filter_map(|s| s.value.strip_prefix(prefix).map(str::to_owned))
            .collect()
    }

    #[test]
    fn attests_itself_and_caches_the_digest() {
        let attestor = UnixAttestor::new(0);
        let first = attestor.attest(me()).unwrap();

        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        assert_eq!(values(&first, "uid:"), [uid.to_string()]);
        assert_eq!(values(&first, "gid:"), [gid.to_string()]);
        let user: Vec<String> = User::from_uid(uid)
            .unwrap()
            .map(|u| u.name)
            .into_iter()
            .collect();
        assert_eq!(values(&first, "user:"), user);
        let group: Vec<String> = Group::from_gid(gid)
            .unwrap()
            .map(|g| g.name)
            .into_iter()
            .collect();
        assert_eq!(values(&first, "group:"), group);
        let supplementary: Vec<String> = nix::unistd::getgroups()
            .unwrap()
            .iter()
            .map(|g| g.to_string())
            .collect();
        let mut got = values(&first, "supplementary_gid:");
        let mut want = supplementary;
        got.sort();
        want.sort();
        want.dedup();
        assert_eq!(got, want);

        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        assert_eq!(values(&first, "path:"), [exe.to_str().unwrap().to_owned()]);
        let digest = hex::encode(Sha256::digest(std::fs::read(&exe).unwrap()));
        assert_eq!(values(&first, "sha256:"), [digest]);
        assert_eq!(attestor.hashed.load(Ordering::Relaxed), 1);

        let second = attestor.attest(me()).unwrap();
        assert_eq!(second, first);
        assert_eq!(
            attestor.hashed.load(Ordering::Relaxed),
            1,
            "second call must hit the cache"
        );
    }

    #[test]
    fn size_limit_skips_sha256_only() {
        let attestor = UnixAttestor::new(1);
        let selectors = attestor.attest(me()).unwrap();
        assert!(values(&selectors, "sha256:").is_empty());
        assert_eq!(values(&selectors, "path:").len(), 1);
        assert_eq!(attestor.hashed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn child_process_then_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let caller = Caller {
            pid: child.id() as i32,
            ..me()
        };
        let attestor = UnixAttestor::new(0);

        let selectors = attestor.attest(caller).unwrap();
        let path = values(&selectors, "path:");
        assert_eq!(path.len(), 1);
        assert!(
            path[0].ends_with("/sleep") || path[0].ends_with("/coreutils"),
            "{path:?}"
        );
        let digest = hex::encode(Sha256::digest(std::fs::read(&path[0]).unwrap()));
        assert_eq!(values(&selectors, "sha256:"), [digest]);

        // Killed but not reaped: a zombie is no caller either.
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let status = std::fs::read_to_string(format!("/proc/{}/status", caller.pid)).unwrap();
            if parse_status(&status).unwrap().state == 'Z' {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(matches!(
            attestor.attest(caller),
            Err(AttestError::CallerGone { .. })
        ));

        child.wait().unwrap();
        let err = attestor.attest(caller).unwrap_err();
        assert!(
            matches!(err, AttestError::CallerGone { pid } if pid == caller.pid),
            "{err:?}"
        );
    }

    #[test]
    fn uid_mismatch_is_rejected() {
        let caller = Caller {
            uid: me().uid.wrapping_add(1),
            ..me()
        };
        let err = UnixAttestor::new(0).attest(caller).unwrap_err();
        assert!(matches!(err, AttestError::CallerGone { .. }), "{err:?}");
    }

    #[test]
    fn missing_pid_is_rejected() {
        let caller = Caller { pid: 0, ..me() };
        assert!(matches!(
            UnixAttestor::new(0).attest(caller),
            Err(AttestError::NoPid)
        ));
    }

    #[test]
    fn reads_through_the_handle_fail_once_the_process_is_reaped() {
        // What makes a second look at the start time unnecessary: the handle stays bound to
        // the process it was opened for, never to a later holder of its pid.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let dir = File::open(format!("/proc/{pid}")).unwrap();
        assert_eq!(read_status(&dir, pid).unwrap().euid, me().uid);
        child.kill().unwrap();
        child.wait().unwrap();
        let err = read_status(&dir, pid).unwrap_err();
        assert!(
            matches!(err, AttestError::CallerGone { pid: gone } if gone == pid),
            "{err:?}"
        );
    }

    #[test]
    fn status_parser() {
        let text = "Name:\tx\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\nGid:\t50\t51\t52\t53\nGroups:\t4 24 4 \n";
        let status = parse_status(text).unwrap();
        assert_eq!(
            status,
            ProcStatus {
                state: 'S',
                euid: 1001,
                egid: 51,
                groups: vec![4, 24]
            }
        );
        let none =
            parse_status("State:\tZ (zombie)\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\n")
                .unwrap();
        assert!(none.groups.is_empty());
        assert_eq!(none.state, 'Z');
        assert_eq!(parse_status("State:\tR (running)\nUid:\t1\n"), None);
        // No state line: not the file we expect.
        assert_eq!(
            parse_status("Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t\n"),
            None
        );
    }

    #[test]
    fn attestor_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<UnixAttestor>();
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = HashCache::default();
        for ino in 0..(CACHE_CAPACITY as u64 + 10) {
            let key = FileKey {
                dev: 1,
                ino,
                size: 0,
                mtime: 0,
                mtime_nsec: 0,
                ctime: 0,
                ctime_nsec: 0,
            };
            cache.insert(key, ino.to_string());
        }
        assert_eq!(cache.digests.len(), CACHE_CAPACITY);
        assert_eq!(cache.order.len(), CACHE_CAPACITY);
        let first = FileKey {
            dev: 1,
            ino: 0,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
        };
        assert!(cache.get(&first).is_none(), "oldest entry is evicted first");
    }
}
