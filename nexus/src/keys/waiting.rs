//! Why Nexus is not serving yet: the reason `/v1/status` and every refused data request
//! give while the root key is not in memory. Each variant's text is what operators read
//! (`docs/operations.md` lists them with their fixes).

use std::fmt;

use nexus_crypto::CryptoError;

use super::keepers::KeeperError;
use crate::error::ServiceError;
use crate::store::StoreError;

/// What the lifecycle is waiting for.
#[derive(Debug)]
pub enum Waiting {
    /// Nothing tried yet.
    Starting,
    /// An operator lifted their seal; the keepers are being asked for their shards.
    SealLifted,
    /// The datastore did not answer.
    Datastore(StoreError),
    /// The stored share count and the configured keepers differ.
    ShareCount {
        /// Shares the stored key was split into.
        shares: u8,
        /// Keepers configured.
        keepers: usize,
    },
    /// The key was rebuilt but the policies it seals do not load.
    Policies(ServiceError),
    /// Another replica created the key; this one unseals from the keepers.
    InitialisedElsewhere,
    /// The OS random generator failed.
    Generate(CryptoError),
    /// Splitting the new key failed.
    Split(CryptoError),
    /// First start: not every keeper took its shard of the new key.
    KeepersRefused {
        /// Keepers that took it.
        reached: usize,
        /// Keepers configured.
        total: usize,
        /// Why the others did not.
        failures: Vec<KeeperError>,
    },
    /// The key-check value of the new key could not be computed.
    KeyCheck(CryptoError),
    /// The first-start transaction failed.
    Initialise(StoreError),
    /// The stored key-check value does not parse.
    CorruptKeyCheck(CryptoError),
    /// Fewer than a threshold of keepers returned a shard.
    TooFewShards {
        /// Shards returned.
        got: usize,
        /// Keepers configured.
        keepers: usize,
        /// Shards needed.
        threshold: u8,
        /// Why the others did not answer.
        problems: Vec<KeeperError>,
    },
    /// Enough shards came back, but no threshold of them rebuilds the stored key.
    ShardsDoNotRebuild(usize),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Starting => f.write_str("starting"),
            Waiting::SealLifted => {
                f.write_str("the operator's seal was lifted; unsealing from the keepers")
            }
            Waiting::Datastore(error) => write!(f, "cannot read the datastore: {error}"),
            Waiting::ShareCount { shares, keepers } => write!(
                f,
                "the root key was split into {shares} shares but {keepers} keepers are configured; configure the same keepers, in the same order"
            ),
            Waiting::Policies(error) => write!(f, "cannot load policies: {error}"),
            Waiting::InitialisedElsewhere => {
                f.write_str("another Nexus initialised the datastore; unsealing from keepers")
            }
            Waiting::Generate(error) => write!(f, "cannot generate a root key: {error}"),
            Waiting::Split(error) => write!(f, "cannot split the root key: {error}"),
            Waiting::KeepersRefused {
                reached,
                total,
                failures,
            } => write!(
                f,
                "uninitialized: every keeper must take its shard of the new root key, {reached} of {total} did; {}",
                joined(failures)
            ),
            Waiting::KeyCheck(error) => {
                write!(f, "cannot compute the key-check value: {error}")
            }
            Waiting::Initialise(error) => {
                let why = if error.is_unavailable() {
                    " (busy or unreachable; another Nexus may be initialising it)"
                } else {
                    ""
                };
                write!(f, "cannot initialise the datastore{why}: {error}")
            }
            Waiting::CorruptKeyCheck(error) => {
                write!(f, "the stored key-check value is corrupt: {error}")
            }
            Waiting::TooFewShards {
                got,
                keepers,
                threshold,
                problems,
            } => write!(
                f,
                "sealed: {got} of {keepers} keepers returned a shard, {threshold} needed{}{}",
                if problems.is_empty() { "" } else { "; " },
                joined(problems)
            ),
            Waiting::ShardsDoNotRebuild(shards) => write!(
                f,
                "sealed: the keepers' {shards} shards do not rebuild this datastore's root key (a keeper holds a shard of another key?)"
            ),
        }
    }
}

fn joined(errors: &[KeeperError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_runbook_lists_them() {
        assert_eq!(
            Waiting::TooFewShards {
                got: 0,
                keepers: 3,
                threshold: 2,
                problems: Vec::new()
            }
            .to_string(),
            "sealed: 0 of 3 keepers returned a shard, 2 needed"
        );
        assert_eq!(
            Waiting::ShareCount {
                shares: 3,
                keepers: 2
            }
            .to_string(),
            "the root key was split into 3 shares but 2 keepers are configured; configure the same keepers, in the same order"
        );
        assert!(
            Waiting::ShardsDoNotRebuild(2)
                .to_string()
                .starts_with("sealed: the keepers' 2 shards do not rebuild")
        );
    }
}
