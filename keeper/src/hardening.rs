//! Process hardening for holders of key material: no core dumps (a crash must not write the
//! shard to disk) and, where the OS allows, memory locked so it is never swapped out.

/// Disables core dumps and locks memory; failures are logged, not fatal, since an unprivileged
/// process may not be allowed to lock memory.
pub fn apply() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    use nix::sys::mman::{MlockAllFlags, mlockall};
    if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        tracing::warn!(error = %e, "could not lock memory (needs CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)");
    }
}
