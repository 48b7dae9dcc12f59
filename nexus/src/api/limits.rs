//! Limits on what one caller can take from Nexus: a request rate per SPIFFE ID (429 with
//! `Retry-After` past it) and a deadline per request (503 `api_timeout`). Body size is capped
//! by the router, connections and the time of each phase by the listener
//! ([`common_net::Limits`], from [`crate::config::Config::serve_limits`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use identity::http::CallerId;
use nexus_api::ErrorCode;

use super::ApiError;

/// The API's per-caller limits.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Sustained requests per second per caller; 0 turns rate limiting off.
    pub rate_per_second: u32,
    /// Requests a caller may send at once after being idle.
    pub burst: u32,
    /// Longest time a request may take before it is answered 503 `api_timeout`.
    pub request_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            rate_per_second: 1000,
            burst: 2000,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Rate limits keyed by the caller's SPIFFE ID.
#[derive(Debug)]
pub struct CallerRates {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl CallerRates {
    /// The limiter for `limits`, or `None` when rate limiting is off.
    pub fn new(limits: &ApiLimits) -> Option<Arc<Self>> {
        let rate = NonZeroU32::new(limits.rate_per_second)?;
        let burst = NonZeroU32::new(limits.burst.max(limits.rate_per_second)).unwrap_or(rate);
        Some(Arc::new(CallerRates {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }))
    }

    /// `Ok` if `caller` may make a request now, else how long until it may.
    fn check(&self, caller: &str) -> Result<(), Duration> {
        // Forget callers whose buckets are full again, so the map holds only active ones.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&caller.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Middleware: answers 429 with `Retry-After` once the caller is over its rate.
pub async fn rate_limit(
    State(rates): State<Arc<CallerRates>>,
    request: Request,
    next: Next,
) -> Response {
    let caller = CallerId::of(request.extensions()).map_or_else(String::new, ToString::to_string);
    match rates.check(&caller) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let seconds = seconds.max(1);
            let mut response = ApiError::new(
                ErrorCode::TooManyRequests,
                format!("{caller} is over its request rate; retry in {seconds} s"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

/// Middleware: answers 503 `api_timeout` when the request takes longer than allowed. The
/// request's own work is dropped at that point; a write whose transaction had not committed
/// is rolled back by the database.
pub async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!("the request did not finish within {timeout:?}; retry"),
        )
        .into_response(),
    }
}
