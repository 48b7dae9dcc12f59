//! Crash durability as a suite: the real binaries killed with SIGKILL at random moments
//! while clients keep writing, then restarted on the same data.
//!
//! - [`nexus`]: concurrent writers put secret versions while Nexus is killed (in some cycles
//!   while it rotates its root key). After every restart each acknowledged write reads back
//!   exactly, by version, and every stored version of every secret opens.
//! - [`server`]: the `spire-server` CLI creates registration entries and join tokens
//!   concurrently while the identity server is killed. After every restart each acknowledged
//!   entry is there as created, and each acknowledged token attests an agent exactly once.
//!
//! `SPIKE_CRASH_CYCLES` sets the number of kill/restart cycles (3 by default, which keeps
//! the suite at tens of seconds on two cores; `SPIKE_CRASH_CYCLES=20` for the long run).
//! The kill moments come from `SPIKE_CRASH_SEED` (default: the clock), printed so that a
//! failure's moments can be replayed; the scheduling around them is the machine's.

mod nexus;
mod server;

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

/// Kill/restart cycles when `SPIKE_CRASH_CYCLES` is unset.
const DEFAULT_CYCLES: usize = 3;

/// How many cycles to run and where the randomness comes from.
struct Knobs {
    cycles: usize,
    seed: u64,
}

impl Knobs {
    /// Reads `SPIKE_CRASH_CYCLES` and `SPIKE_CRASH_SEED`, and prints them.
    fn from_env(suite: &str) -> Knobs {
        let cycles = match std::env::var("SPIKE_CRASH_CYCLES") {
            Ok(value) => value
                .parse()
                .unwrap_or_else(|_| panic!("SPIKE_CRASH_CYCLES={value:?} is not a number")),
            Err(_) => DEFAULT_CYCLES,
        };
        assert!(cycles > 0, "SPIKE_CRASH_CYCLES must be at least 1");
        let seed = match std::env::var("SPIKE_CRASH_SEED") {
            Ok(value) => value
                .parse()
                .unwrap_or_else(|_| panic!("SPIKE_CRASH_SEED={value:?} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default(),
        };
        println!("{suite}: {cycles} cycles, seed {seed} (replay: SPIKE_CRASH_SEED={seed})");
        Knobs { cycles, seed }
    }

    /// The random source of one suite.
    fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.seed)
    }
}

/// Smallest, median and largest of `times`.
fn spread(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    match (sorted.first(), sorted.get(sorted.len() / 2), sorted.last()) {
        (Some(min), Some(median), Some(max)) => {
            format!("min {min:?}, median {median:?}, max {max:?}")
        }
        _ => "none".to_owned(),
    }
}
