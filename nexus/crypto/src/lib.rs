//! Cryptographic core of Nexus, the SPIKE-compatible secrets store.
//!
//! Secrets are protected with envelope encryption:
//!
//! * a 32-byte [`RootKey`] never encrypts user data directly; instead every
//!   purpose gets its own key via HKDF-SHA256 ([`RootKey::derive`], labels in
//!   [`Purpose`]);
//! * each record is encrypted with a random [`DataKey`] using AES-256-GCM
//!   ([`seal`] / [`open`]), with associated data ([`aad`]) binding the
//!   ciphertext to its table, path and version;
//! * the data key is stored wrapped ([`wrap`] / [`unwrap`]) under the
//!   root-derived key-encryption key, so rotating the root key only re-wraps
//!   data keys;
//! * the root key is split among keepers with Shamir secret sharing over
//!   GF(256) ([`split`] / [`combine`]); a [`KeyCheck`] value detects wrong or
//!   corrupted shards at recombination time.
//!
//! This crate performs no I/O.

mod aead;
mod envelope;
mod error;
mod keycheck;
mod keys;
mod shamir;

pub use aead::{AeadKey, NONCE_LEN, SEALED_FORMAT_VERSION, Sealed, aad, open, seal};
pub use envelope::{WrappedKey, unwrap, wrap};
pub use error::{CryptoError, Result};
pub use keycheck::KeyCheck;
pub use keys::{DataKey, DerivedKey, KEY_LEN, Purpose, RootKey};
pub use shamir::{Shard, combine, split};
