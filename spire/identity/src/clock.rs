//! The one source of wall-clock time for every role: what SVIDs, tokens, entries, secrets'
//! metadata and audit lines are dated with. Injected (the identity server's state, Nexus's
//! service) so that a test can set the time and assert on it instead of racing the real
//! clock. Durations (latency, backoff, timeouts) use monotonic [`std::time::Instant`]s and
//! tokio's timers, which no date depends on.

use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

/// The time source: the system clock, or a manual one that only moves when told.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<Arc<Mutex<OffsetDateTime>>>,
}

impl Clock {
    /// The system's UTC clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that reads `start` until [`set`](Self::set) moves it (for tests).
    pub fn manual(start: OffsetDateTime) -> Self {
        Clock {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// Now, in UTC.
    pub fn now(&self) -> OffsetDateTime {
        match &self.manual {
            None => OffsetDateTime::now_utc(),
            Some(time) => *time.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Now, in whole seconds since the Unix epoch (how the datastores and the wire date
    /// things).
    pub fn unix_seconds(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Moves a manual clock (and every clone of it) to `time`; a system clock ignores it.
    pub fn set(&self, time: OffsetDateTime) {
        if let Some(slot) = &self.manual {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = time;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_set_and_clones_follow() {
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let clock = Clock::manual(start);
        let clone = clock.clone();
        assert_eq!(clock.now(), start);
        assert_eq!(clock.unix_seconds(), 20_000 * 86_400);
        let later = start + time::Duration::seconds(90);
        clone.set(later);
        assert_eq!(clock.now(), later);
        assert_eq!(clock.unix_seconds(), 20_000 * 86_400 + 90);

        let system = Clock::system();
        system.set(start);
        assert!(system.now() > start, "the system clock ignores set");
    }
}
