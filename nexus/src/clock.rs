//! Nexus's one source of wall-clock time: what secrets' metadata, policies, the root key
//! record and audit lines are dated with. Injected through [`crate::service::Nexus`] so a
//! test can set the time and assert on it instead of racing the real clock. The clock is
//! the one every role uses ([`identity::clock`]).

pub use identity::clock::Clock;
