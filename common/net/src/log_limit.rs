//! Rate-limited logging for events an attacker can cause at will (refused handshakes and
//! connections): a flood must not become a flood of log lines too.
//!
//! A fixed window: the first `per_window` events of each window are logged, the rest only
//! counted, and the next line logged says how many were left out. Written here because the
//! need is this small (the `governor` GCRA used for request rates has no notion of
//! "suppressed since").

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::budget::lock;

/// Decides which events of a kind get a log line.
#[derive(Debug)]
pub struct LogLimiter {
    per_window: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Ten lines per ten seconds.
    pub const DEFAULT_PER_WINDOW: u32 = 10;
    /// See [`LogLimiter::DEFAULT_PER_WINDOW`].
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

    /// At most `per_window` lines per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogLimiter {
            per_window,
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether the event happening at `now` gets a line: `Some(n)` when it does, `n` being
    /// the events left out since the last line; `None` when it is only counted.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        if now.saturating_duration_since(state.start) >= self.window {
            state.start = now;
            state.logged = 0;
        }
        if state.logged >= self.per_window {
            state.suppressed += 1;
            return None;
        }
        state.logged += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(Self::DEFAULT_PER_WINDOW, Self::DEFAULT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_logs_its_quota_and_the_next_line_counts_the_rest() {
        let limiter = LogLimiter::new(3, Duration::from_secs(10));
        let start = Instant::now();
        let admitted: Vec<_> = (0..100).map(|_| limiter.admit(start)).collect();
        assert_eq!(&admitted[..3], &[Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none), "97 left out");
        assert_eq!(limiter.admit(start + Duration::from_secs(9)), None);
        let next = start + Duration::from_secs(10);
        assert_eq!(
            limiter.admit(next),
            Some(98),
            "the first line of the next window"
        );
        assert_eq!(limiter.admit(next), Some(0));
    }
}
