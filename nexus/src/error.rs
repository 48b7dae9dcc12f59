//! What can go wrong in an operation, independent of HTTP: one [`ServiceError`] whose
//! variants the API maps to its error codes ([`crate::api::ApiError`]), each carrying a typed
//! reason whose text is the message the caller reads.

use crate::cipher::CiphertextError;
use crate::keys::break_glass::RestoreError;
use crate::keys::sealing::SealingError;
use crate::secrets::PathError;
use crate::store::{Missing, StoreError};
use crate::validate::{MetadataError, ValuesError, VersionsError};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No root key in memory yet, or it is changing; retry later.
    #[error("{0}")]
    NotReady(NotReady),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(Missing),
    /// A check-and-set or key conflict.
    #[error("{0}")]
    Conflict(Conflict),
    /// The request is invalid; the reason says why.
    #[error("{0}")]
    Invalid(Invalid),
    /// The datastore cannot be reached right now.
    #[error("the datastore is unavailable (unreachable or overloaded); retry shortly")]
    Unavailable,
    /// Something that should not happen; details are logged, not returned.
    #[error("internal error")]
    Internal,
}

impl ServiceError {
    /// An invalid request, for any of the reasons [`Invalid`] names.
    pub fn invalid(reason: impl Into<Invalid>) -> Self {
        ServiceError::Invalid(reason.into())
    }
}

/// Why Nexus cannot serve data right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// No root key in memory; what the lifecycle is waiting for, if anything yet.
    #[error("{}", sealed_message(.0.as_deref()))]
    Sealed(Option<String>),
    /// An operator sealed Nexus (`spike operator seal`): no root key until they unseal it.
    #[error(
        "Nexus is sealed: an operator ({by}) sealed it at {at}; it serves again after `spike operator unseal`"
    )]
    SealedByOperator {
        /// The operator's SPIFFE ID.
        by: String,
        /// When, RFC 3339.
        at: String,
    },
    /// An operator sealed Nexus through another replica, which this one is about to learn.
    #[error(
        "Nexus is sealed: an operator sealed it through another Nexus; it serves again after `spike operator unseal`"
    )]
    SealedElsewhere,
    /// Another replica rotated the root key and this one is switching to it.
    #[error(
        "the root key was rotated by another Nexus and this one is switching to it; retry shortly"
    )]
    KeySwitching,
    /// Another replica rotated the root key and this one is fetching it from the keepers.
    #[error(
        "the root key was rotated by another Nexus and this one is still fetching it from the keepers; retry shortly"
    )]
    KeyFetching,
    /// Ready, yet the datastore holds no root key record.
    #[error("no root key record")]
    NoKeyRecord,
    /// The stored policy generation went backwards (a database restored from a backup).
    #[error("the policy cache is resynchronising; retry shortly")]
    PolicyResync,
}

fn sealed_message(waiting: Option<&str>) -> String {
    match waiting {
        None | Some("") => "Nexus is sealed".to_owned(),
        Some(waiting) => format!("Nexus is not ready: {waiting}"),
    }
}

/// A write that conflicts with the stored state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A check-and-set put expected another current version.
    #[error("check-and-set expected version {expected}, but the current version is {current}")]
    CheckAndSet {
        /// The version the caller expected.
        expected: u64,
        /// The version stored.
        current: u64,
    },
    /// The stored key-check value names another root key than the one in memory.
    #[error(
        "the stored root key is not the one in memory (rotated by another Nexus?); restart this Nexus"
    )]
    KeyNotInMemory,
    /// Another rotation committed while this one ran.
    #[error("the root key changed meanwhile (another rotation?); nothing was rotated")]
    RotatedMeanwhile,
    /// A seal of a Nexus an operator sealed already.
    #[error(
        "Nexus is already sealed: an operator ({by}) sealed it at {at}; `spike operator unseal` brings it back"
    )]
    AlreadySealed {
        /// The operator's SPIFFE ID.
        by: String,
        /// When, RFC 3339.
        at: String,
    },
    /// An unseal of a Nexus no operator sealed.
    #[error(
        "Nexus is not sealed by an operator, so there is nothing to unseal ({0}); a Nexus waiting for its keepers unseals by itself"
    )]
    NotSealed(String),
    /// A seal of a datastore that holds no root key.
    #[error("Nexus was never initialized, so there is no root key to seal")]
    NeverInitialized,
    /// A rekey while another one runs.
    #[error("a rekey is already running ({0}); nothing changed, retry once it is done")]
    RekeyRunning(String),
    /// A rekey while a root key rotation is unfinished (keepers still getting the new key's
    /// shards).
    #[error(
        "a root key rotation is still being finished (keepers are getting the new key's shards); nothing changed, retry in a moment"
    )]
    RotationUnfinished,
    /// The keeper set or the root key changed while the rekey ran (a rekey or rotation
    /// through another replica, or a seal).
    #[error(
        "the keeper set or the root key changed meanwhile (a rekey or rotation through another Nexus, or a seal); nothing changed, check `spike status` and retry"
    )]
    KeeperSetChanged,
}

/// Why a request is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// A secret path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A secret's keys and values.
    #[error(transparent)]
    Values(#[from] ValuesError),
    /// A list of version numbers.
    #[error(transparent)]
    Versions(#[from] VersionsError),
    /// A secret's metadata, or a listing's parameters.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A write without check-and-set where it is required.
    #[error("{0}")]
    CasRequired(String),
    /// A policy.
    #[error(transparent)]
    Policy(#[from] policies::PolicyError),
    /// A recovery shard.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A ciphertext given to the cipher service.
    #[error(transparent)]
    Ciphertext(#[from] CiphertextError),
    /// A rekey's keepers or threshold.
    #[error(transparent)]
    Rekey(#[from] crate::keys::rekey::RekeyError),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::KeyChanged => ServiceError::NotReady(NotReady::KeySwitching),
            StoreError::Sealed => ServiceError::NotReady(NotReady::SealedElsewhere),
            error @ StoreError::CasRequired(_) => {
                ServiceError::Invalid(Invalid::CasRequired(error.to_string()))
            }
            StoreError::CasMismatch { expected, current } => {
                ServiceError::Conflict(Conflict::CheckAndSet { expected, current })
            }
            error if error.is_unavailable() => {
                tracing::warn!(%error, "datastore unavailable");
                ServiceError::Unavailable
            }
            error => {
                tracing::error!(%error, "datastore error");
                ServiceError::Internal
            }
        }
    }
}

impl From<SealingError> for ServiceError {
    fn from(error: SealingError) -> Self {
        tracing::error!(%error, "a stored record does not open under the root key");
        ServiceError::Internal
    }
}

impl From<nexus_crypto::CryptoError> for ServiceError {
    fn from(error: nexus_crypto::CryptoError) -> Self {
        tracing::error!(%error, "sealing failed");
        ServiceError::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_api_messages() {
        let sealed = |waiting: Option<&str>| {
            ServiceError::NotReady(NotReady::Sealed(waiting.map(str::to_owned))).to_string()
        };
        assert_eq!(sealed(None), "Nexus is sealed");
        assert_eq!(sealed(Some("")), "Nexus is sealed");
        assert_eq!(
            sealed(Some("sealed: 1 of 3 keepers returned a shard, 2 needed")),
            "Nexus is not ready: sealed: 1 of 3 keepers returned a shard, 2 needed"
        );
        assert_eq!(
            ServiceError::NotFound(Missing::Policy("p".into())).to_string(),
            "policy \"p\" not found"
        );
        assert_eq!(
            ServiceError::Conflict(Conflict::CheckAndSet {
                expected: 1,
                current: 3
            })
            .to_string(),
            "check-and-set expected version 1, but the current version is 3"
        );
    }
}
