//! Per-caller limits on the Workload API, so that a flood of calls from one process cannot
//! starve the others: a call rate (GCRA, unary calls and stream opens alike) and a number of
//! streams open at once. Both are keyed by the caller's PID from its peer credentials
//! ([`CallerKey`]): every connection of one process shares its budget, and each other process
//! has its own. A caller over a limit is answered `ResourceExhausted` before it is attested,
//! so a flood costs the agent no `/proc` reads and no blocking threads.
//!
//! # Memory
//!
//! Both maps stay bounded by what callers are doing now, not by every PID ever seen:
//! - the rate limiter keeps one GCRA state per key; a key whose bucket has refilled (at most
//!   `burst / rate` seconds after its last call: 2 s by default) is indistinguishable from a
//!   new one, and [`CallerLimits::check_rate`] drops all such keys
//!   (`governor`'s `retain_recent`, then `shrink_to_fit`) at most once every
//!   [`SWEEP_EVERY`]. The map thus holds the callers of roughly the last `SWEEP_EVERY`
//!   plus `burst / rate`, and never more than there are PIDs (`pid_max`).
//! - the stream counts only hold callers with a stream open: a [`StreamSlot`] gives its slot
//!   back when dropped and the count is removed when it reaches zero.
//!
//! # PID reuse
//!
//! A PID reused by a new process inherits whatever is left of its predecessor's budget for
//! at most `burst / rate` seconds (and, for streams, until the predecessor's connections are
//! gone, which the kernel closes when it exits). That errs on the side of refusing briefly,
//! never of letting a flood through.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use super::attestor::Caller;

/// The most often the rate limiter forgets callers whose budget has refilled.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The Workload API's per-caller limits, as configured (`workload_rate_limit`,
/// `workload_rate_burst`, `workload_max_streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadLimits {
    /// Sustained calls (unary calls and stream opens) per second per caller; 0 turns the rate
    /// limit off.
    pub rate_per_second: u32,
    /// Calls a caller may make at once after being idle (at least 1 when the rate is on).
    pub burst: u32,
    /// Streams a caller may have open at once; 0 means no limit.
    pub max_streams: u32,
}

impl WorkloadLimits {
    /// 100 calls per second per caller, bursts of 200, 32 open streams.
    pub const DEFAULT: WorkloadLimits = WorkloadLimits {
        rate_per_second: 100,
        burst: 200,
        max_streams: 32,
    };
}

impl Default for WorkloadLimits {
    fn default() -> Self {
        WorkloadLimits::DEFAULT
    }
}

/// Who a limit applies to: the calling process, or its user when the kernel gave no PID
/// (such a call then fails attestation, but it is refused cheaply first if it floods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Pid(i32),
    Uid(u32),
}

impl CallerKey {
    pub fn of(caller: &Caller) -> CallerKey {
        if caller.pid > 0 {
            CallerKey::Pid(caller.pid)
        } else {
            CallerKey::Uid(caller.uid)
        }
    }
}

/// Which limit refused a call, with the gRPC message it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over the call rate; the caller may retry after `retry_after`.
    Rate { retry_after: Duration },
    /// Already `max` streams open.
    Streams { max: u32 },
}

impl Refused {
    /// The label of the limit in metrics.
    pub fn limit(&self) -> &'static str {
        match self {
            Refused::Rate { .. } => "rate",
            Refused::Streams { .. } => "streams",
        }
    }

    /// The `ResourceExhausted` status the caller gets.
    pub fn status(&self) -> tonic::Status {
        let message = match self {
            Refused::Rate { retry_after } => format!(
                "rate limit exceeded for this caller; retry later (in {} ms)",
                retry_after.as_millis().max(1)
            ),
            Refused::Streams { max } => {
                format!("too many open streams for this caller (limit {max}); close one and retry")
            }
        };
        tonic::Status::resource_exhausted(message)
    }
}

type KeyedLimiter<C> =
    RateLimiter<CallerKey, HashMapStateStore<CallerKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limits' state, shared by all calls ([`CallerLimits::new`]).
#[derive(Debug)]
pub struct CallerLimits<C: Clock = DefaultClock> {
    rate: Option<Rate<C>>,
    max_streams: u32,
    /// Open streams per caller; only callers with at least one.
    streams: Mutex<HashMap<CallerKey, u32>>,
}

#[derive(Debug)]
struct Rate<C: Clock> {
    limiter: KeyedLimiter<C>,
    clock: C,
    last_sweep: Mutex<C::Instant>,
}

impl CallerLimits<DefaultClock> {
    /// The limits' state for `limits`, on the monotonic clock.
    pub fn new(limits: WorkloadLimits) -> Arc<Self> {
        CallerLimits::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> CallerLimits<C> {
    /// The limits' state for `limits`, on `clock`.
    pub fn with_clock(limits: WorkloadLimits, clock: C) -> Arc<Self> {
        let rate = NonZeroU32::new(limits.rate_per_second).map(|per_second| {
            let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
            // Explicitly the HashMap store (a mutexed map), whatever features governor has.
            let limiter = RateLimiter::hashmap_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                clock.clone(),
            );
            Rate {
                limiter,
                last_sweep: Mutex::new(clock.now()),
                clock,
            }
        });
        Arc::new(CallerLimits {
            rate,
            max_streams: limits.max_streams,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one call from `key`'s rate budget, or says when it may call again.
    pub fn check_rate(&self, key: CallerKey) -> Result<(), Refused> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        self.sweep_if_due(rate);
        rate.limiter
            .check_key(&key)
            .map_err(|not_until| Refused::Rate {
                retry_after: not_until.wait_time_from(rate.clock.now()),
            })
    }

    /// Drops the rate state of callers whose budget has refilled, at most once per
    /// [`SWEEP_EVERY`] (see the module docs).
    fn sweep_if_due(&self, rate: &Rate<C>) {
        let now = rate.clock.now();
        {
            let mut last = lock(&rate.last_sweep);
            if Duration::from(now.duration_since(*last)) < SWEEP_EVERY {
                return;
            }
            *last = now;
        }
        rate.limiter.retain_recent();
        rate.limiter.shrink_to_fit();
    }

    /// How many callers the rate limiter holds state for.
    pub fn rate_keys(&self) -> usize {
        self.rate.as_ref().map_or(0, |rate| rate.limiter.len())
    }

    /// Takes one of `key`'s stream slots; the slot is given back when the returned guard is
    /// dropped, which must happen when the stream ends.
    pub fn open_stream(self: &Arc<Self>, key: CallerKey) -> Result<StreamSlot<C>, Refused> {
        if self.max_streams > 0 {
            let mut streams = lock(&self.streams);
            let open = streams.entry(key).or_insert(0);
            if *open >= self.max_streams {
                return Err(Refused::Streams {
                    max: self.max_streams,
                });
            }
            *open += 1;
        }
        Ok(StreamSlot {
            limits: self.clone(),
            key,
        })
    }

    /// How many streams `key` has open (counted only when streams are limited).
    pub fn open_streams(&self, key: CallerKey) -> u32 {
        lock(&self.streams).get(&key).copied().unwrap_or(0)
    }

    /// How many callers have a stream open (counted only when streams are limited).
    pub fn stream_keys(&self) -> usize {
        lock(&self.streams).len()
    }
}

/// One open stream of a caller ([`CallerLimits::open_stream`]); dropping it gives the slot
/// back.
#[derive(Debug)]
pub struct StreamSlot<C: Clock = DefaultClock> {
    limits: Arc<CallerLimits<C>>,
    key: CallerKey,
}

impl<C: Clock> Drop for StreamSlot<C> {
    fn drop(&mut self) {
        if self.limits.max_streams == 0 {
            return;
        }
        let mut streams = lock(&self.limits.streams);
        if let Some(open) = streams.get_mut(&self.key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.key);
            }
        }
    }
}

/// The maps hold only counters, consistent after every statement: a panic elsewhere while
/// holding the lock leaves nothing half-done, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    const A: CallerKey = CallerKey::Pid(100);
    const B: CallerKey = CallerKey::Pid(200);

    fn limits(rate_per_second: u32, burst: u32, max_streams: u32) -> WorkloadLimits {
        WorkloadLimits {
            rate_per_second,
            burst,
            max_streams,
        }
    }

    #[test]
    fn a_caller_gets_its_burst_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = CallerLimits::with_clock(limits(10, 5, 0), clock.clone());
        for call in 0..5 {
            assert_eq!(limiter.check_rate(A), Ok(()), "call {call} of the burst");
        }
        let Err(Refused::Rate { retry_after }) = limiter.check_rate(A) else {
            panic!("the call after the burst is refused");
        };
        assert_eq!(
            retry_after,
            Duration::from_millis(100),
            "one call per 100 ms"
        );
        // Refused calls take nothing: after 100 ms exactly one more call is allowed.
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.check_rate(A), Ok(()));
        assert!(limiter.check_rate(A).is_err());
        // Idle long enough, the whole burst is back.
        clock.advance(Duration::from_millis(500));
        for _ in 0..5 {
            assert_eq!(limiter.check_rate(A), Ok(()));
        }
        assert!(limiter.check_rate(A).is_err());
    }

    #[test]
    fn one_callers_flood_does_not_touch_anothers_budget() {
        let clock = FakeRelativeClock::default();
        let limiter = CallerLimits::with_clock(limits(1, 3, 0), clock);
        let refused = (0..1000).filter(|_| limiter.check_rate(A).is_err()).count();
        assert_eq!(refused, 997, "only A's burst of 3 passes");
        for _ in 0..3 {
            assert_eq!(limiter.check_rate(B), Ok(()), "B has its own full burst");
        }
        // The same PID is the same caller, the UID fallback another key.
        assert!(limiter.check_rate(CallerKey::Pid(100)).is_err());
        assert_eq!(limiter.check_rate(CallerKey::Uid(100)), Ok(()));
    }

    #[test]
    fn a_zero_rate_or_stream_limit_turns_it_off() {
        let limiter = CallerLimits::new(limits(0, 0, 0));
        for _ in 0..10_000 {
            assert_eq!(limiter.check_rate(A), Ok(()));
        }
        assert_eq!(limiter.rate_keys(), 0);
        let slots: Vec<_> = (0..1000)
            .map(|_| limiter.open_stream(A).expect("no stream limit"))
            .collect();
        assert_eq!(slots.len(), 1000);
        assert_eq!(limiter.stream_keys(), 0, "nothing is counted when off");
    }

    #[test]
    fn a_burst_of_zero_allows_one_call_at_a_time() {
        let clock = FakeRelativeClock::default();
        let limiter = CallerLimits::with_clock(limits(2, 0, 0), clock.clone());
        assert_eq!(limiter.check_rate(A), Ok(()));
        assert!(limiter.check_rate(A).is_err());
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check_rate(A), Ok(()));
    }

    #[test]
    fn refusals_answer_resource_exhausted_with_a_clear_message() {
        let rate = Refused::Rate {
            retry_after: Duration::from_millis(250),
        }
        .status();
        assert_eq!(rate.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            rate.message(),
            "rate limit exceeded for this caller; retry later (in 250 ms)"
        );
        let streams = Refused::Streams { max: 32 }.status();
        assert_eq!(streams.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            streams.message(),
            "too many open streams for this caller (limit 32); close one and retry"
        );
    }

    #[test]
    fn streams_are_capped_per_caller_and_given_back_when_dropped() {
        let limiter = CallerLimits::new(limits(0, 0, 2));
        let first = limiter.open_stream(A).expect("first stream");
        let second = limiter.open_stream(A).expect("second stream");
        assert_eq!(
            limiter.open_stream(A).map(|_| ()),
            Err(Refused::Streams { max: 2 })
        );
        assert_eq!(limiter.open_streams(A), 2, "a refusal takes no slot");
        let other = limiter.open_stream(B).expect("B has its own slots");
        drop(first);
        assert_eq!(limiter.open_streams(A), 1);
        let third = limiter.open_stream(A).expect("a freed slot is reusable");
        drop((second, third, other));
        assert_eq!(limiter.open_streams(A), 0);
        assert_eq!(
            limiter.stream_keys(),
            0,
            "callers without streams are forgotten"
        );
    }

    #[test]
    fn slots_dropped_from_other_threads_are_all_given_back() {
        let limiter = CallerLimits::new(limits(0, 0, 64));
        let slots: Vec<_> = (0..64)
            .map(|_| limiter.open_stream(A).expect("slot"))
            .collect();
        assert!(limiter.open_stream(A).is_err());
        let threads: Vec<_> = slots
            .into_iter()
            .map(|slot| std::thread::spawn(move || drop(slot)))
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(limiter.stream_keys(), 0);
        assert!(limiter.open_stream(A).is_ok());
    }

    #[test]
    fn callers_whose_budget_refilled_are_swept_periodically() {
        let clock = FakeRelativeClock::default();
        let limiter = CallerLimits::with_clock(limits(100, 200, 0), clock.clone());
        for pid in 1001..=2000 {
            assert_eq!(limiter.check_rate(CallerKey::Pid(pid)), Ok(()));
        }
        assert_eq!(limiter.rate_keys(), 1000, "one state per caller");
        // Not yet time to sweep: the states stay, even though they have refilled.
        clock.advance(SWEEP_EVERY / 2);
        assert_eq!(limiter.check_rate(A), Ok(()));
        assert_eq!(limiter.rate_keys(), 1001);
        // The next call after SWEEP_EVERY sweeps first: every state so far has refilled
        // (A's too, 5 s after its call), so only the caller that just called is kept.
        clock.advance(SWEEP_EVERY / 2);
        assert_eq!(limiter.check_rate(B), Ok(()));
        assert_eq!(limiter.rate_keys(), 1);
        // A caller that drained its budget just before a sweep keeps its state through it;
        // B, refilled, is dropped.
        clock.advance(SWEEP_EVERY - Duration::from_secs(1));
        let served = (0..1000).filter(|_| limiter.check_rate(A).is_ok()).count();
        assert_eq!(served, 200, "A's burst");
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check_rate(CallerKey::Pid(300)), Ok(()));
        assert_eq!(
            limiter.rate_keys(),
            2,
            "A (still refilling) and the new caller"
        );
    }
}
