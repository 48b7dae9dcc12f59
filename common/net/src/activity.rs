//! Whether a connection is doing anything: requests in progress (counted from their arrival
//! until their response body is done, so an open stream counts) and since when it has had
//! none. The connection's watcher ([`Activity::idle`]) closes it once it has been idle too
//! long; hyper has no idle timeout for HTTP/2, nor any bound on the time before the first
//! request (HTTP/1-or-2 detection reads with no deadline).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::budget::lock;

/// A connection's requests in progress.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    requests: u64,
    idle_since: Instant,
}

/// Why a connection was found idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// No request arrived in time since the connection opened.
    NoRequest,
    /// No request arrived in time since the last one ended.
    BetweenRequests,
}

impl Idle {
    /// The reason label in metrics: a first request that did not come is a request whose
    /// headers did not arrive in time, whether hyper's HTTP/1 timer or this watcher saw it
    /// first.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Idle::NoRequest => "header_timeout",
            Idle::BetweenRequests => "idle_timeout",
        }
    }
}

impl Activity {
    /// A connection that opened now and has had no request.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                requests: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        })
    }

    /// A request arrived; it is in progress until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        {
            let mut state = lock(&self.state);
            state.in_flight += 1;
            state.requests += 1;
        }
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Requests that arrived so far.
    #[cfg(test)]
    pub(crate) fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Resolves once the connection has had no request in progress for `first` (before any
    /// request) or `between` (after one).
    pub(crate) async fn idle(&self, first: Duration, between: Duration) -> Idle {
        loop {
            let changed = self.changed.notified();
            let (in_flight, requests, since) = {
                let state = lock(&self.state);
                (state.in_flight, state.requests, state.idle_since)
            };
            if in_flight > 0 {
                changed.await;
                continue;
            }
            let (limit, why) = if requests == 0 {
                (first, Idle::NoRequest)
            } else {
                (between, Idle::BetweenRequests)
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => return why,
                () = changed => {}
            }
        }
    }
}

/// A request in progress ([`Activity::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = lock(&self.0.state);
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight == 0 {
                state.idle_since = Instant::now();
            }
        }
        // One waiter at most (the connection's watcher); a stored permit is never lost.
        self.0.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_without_requests_is_idle_after_the_first_limit() {
        let activity = Activity::new();
        let idle = tokio::time::timeout(
            Duration::from_secs(30),
            activity.idle(Duration::from_millis(20), Duration::from_secs(3600)),
        )
        .await
        .expect("found idle");
        assert_eq!(idle, Idle::NoRequest);
    }

    #[tokio::test]
    async fn a_request_in_progress_keeps_it_busy_and_its_end_starts_the_idle_clock() {
        let activity = Activity::new();
        let request = activity.begin();
        // With a request in progress, not even a zero limit makes it idle: a correct
        // watcher never resolves here, so this wait cannot fail on a slow machine.
        let watcher = activity.idle(Duration::ZERO, Duration::ZERO);
        tokio::pin!(watcher);
        let early = tokio::time::timeout(Duration::from_millis(200), watcher.as_mut()).await;
        assert!(early.is_err(), "idle while a request was in progress");
        drop(request);
        let idle = tokio::time::timeout(Duration::from_secs(30), watcher)
            .await
            .expect("idle once the request ended");
        assert_eq!(idle, Idle::BetweenRequests);
        assert_eq!(activity.requests(), 1);
    }
}
