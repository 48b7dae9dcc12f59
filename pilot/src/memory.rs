//! Keeping secret values out of swap, as SPIKE's pilot does, where the system allows it.
//!
//! Core dumps are left enabled on purpose: a non-dumpable process's `/proc/<pid>` belongs to
//! root, so a non-root agent could no longer attest this binary by its path.

/// Environment variable that makes a failure to lock memory visible.
pub const SHOW_WARNING_ENV: &str = "SPIKE_PILOT_SHOW_MEMORY_WARNING";

/// Locks all memory if allowed. Silent unless [`SHOW_WARNING_ENV`] is `true`.
pub fn lock() {
    if let Err(problem) = common_process::lock_memory()
        && std::env::var(SHOW_WARNING_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    {
        eprintln!(
            "Warning: memory not locked, so secret values could be swapped to disk: {problem}."
        );
    }
}
