//! The root key's life (DESIGN.md section 4): everything that creates, holds, rebuilds,
//! rotates or exports the key that every record is sealed under.
//!
//! - [`lifecycle`]: the owner. Its phase (uninitialised, sealed, sealed by an operator,
//!   unsealing, ready, rotating), the key and the previous one, the write gate and fence,
//!   the operator's seal, the keeper loop's wake-up and the break-glass shards; every
//!   change goes through one of its transitions.
//! - [`unseal`]: the keeper loop's first part: create the key on first start, rebuild it
//!   from keepers (or take recovery shards) later.
//! - `seeding`: the keeper loop once ready: keepers keep their shard of the key in force,
//!   rotations are finished, another replica's rotated key is fetched.
//! - [`keepers`]: the mTLS client for keepers.
//! - [`rotation`]: root key rotation, crash-safe at every step, and switching to a key
//!   another replica rotated to.
//! - [`rekey`]: a new keeper set and threshold (and optionally a new key) while running,
//!   crash-safe at every step: keepers hold a shard per generation of the set.
//! - [`break_glass`]: recovery shards out (`recover`) and back in (`restore`).
//! - [`operator_seal`]: an operator takes the key out of memory (`seal`) until they let it
//!   back from the keepers (`unseal`); every replica follows.
//! - [`sealing`]: envelope encryption of records under the key.
//! - [`waiting`]: why Nexus is not serving yet, as `/v1/status` says it.

pub mod break_glass;
pub mod keepers;
pub mod lifecycle;
pub mod operator_seal;
pub mod rekey;
pub mod rotation;
pub mod sealing;
mod seeding;
pub mod unseal;
pub mod waiting;

pub use lifecycle::{IllegalTransition, Lifecycle, Phase, Seal};
pub use unseal::install;
pub use waiting::Waiting;
