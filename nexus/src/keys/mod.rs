//! The root key's life (DESIGN.md section 4): everything that creates, holds, rebuilds,
//! rotates or exports the key that every record is sealed under.
//!
//! - [`state`]: the key in memory and the lifecycle's status.
//! - [`unseal`]: create the key on first start, rebuild it from keepers later, keep keepers
//!   seeded.
//! - [`keepers`]: the mTLS client for keepers.
//! - [`rotation`]: root key rotation, crash-safe at every step.
//! - [`break_glass`]: recovery shards out (`recover`) and back in (`restore`).
//! - [`sealing`]: envelope encryption of records under the key.

pub mod break_glass;
pub mod keepers;
pub mod rotation;
pub mod sealing;
pub mod state;
pub mod unseal;
