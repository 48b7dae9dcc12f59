//! What every listener in this project shares, so that none can be jammed: bounded admission,
//! a timeout on every phase of a connection, and counters for what was refused.
//!
//! A tour:
//! - [`limits`]: [`Limits`], the bounds of one listener (counts overall and per source,
//!   timeouts per phase, lingering), with a preset per kind of listener and a TOML form.
//! - [`budget`]: per-source caps and the [`budget::Slot`] a served connection carries, inside
//!   the [`Admitted`] stream every listener yields.
//! - [`tcp`] and [`unix`]: admit plain TCP connections (per IP) and Unix-socket connections
//!   (per UID and PID, from `SO_PEERCRED`); TLS listeners admit in two stages in
//!   `identity::listener`, with a budget of their own for handshakes.
//! - [`server`]: [`HttpServer`] serves HTTP/1 and HTTP/2 on admitted connections, bounding
//!   what hyper does not (time to the first request, HTTP/2 idle time, request bodies) and
//!   lingering at close so an early answer (413) reaches the client.
//! - [`metrics`]: the counters every binary exposes, with rate-limited warnings
//!   ([`log_limit`]).

mod activity;
pub mod admitted;
pub mod body;
pub mod budget;
pub mod limits;
mod linger;
pub mod log_limit;
pub mod metrics;
pub mod server;
pub mod tcp;
pub mod unix;

pub use admitted::Admitted;
pub use limits::{Limits, LimitsError, LimitsFile};
pub use metrics::{ListenerMetrics, NetMetrics};
pub use server::{Accepted, DRAIN_TIMEOUT, HttpServer};

/// The error type of bodies and services served here.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
