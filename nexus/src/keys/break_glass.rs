//! Break-glass recovery (SPIKE's `recover` and `restore`): when every keeper lost its shard,
//! operators rebuild the root key from recovery shards they exported earlier.
//!
//! Recovery shards are the keepers' shards: shares are deterministic for a root key, so
//! exporting them creates no new share set.

use std::collections::BTreeMap;

use nexus_api::model::RestoreResponse;
use nexus_crypto::{KEY_LEN, KeyCheck, Shard, split};
use policies::Role;
use zeroize::Zeroizing;

use crate::authz::Grant;
use crate::error::ServiceError;
use crate::keys::Phase;
use crate::keys::unseal::{InstallError, combine_any, install};
use crate::service::Nexus;

/// Why a recovery shard is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Nexus holds its root key already.
    #[error("Nexus is not sealed; restore is only for a Nexus that cannot unseal from its keepers")]
    NotSealed,
    /// An operator sealed Nexus; only an operator's unseal brings the key back.
    #[error(
        "Nexus was sealed by an operator, not by losing its keepers' shards; the superuser's `spike operator unseal` brings it back"
    )]
    SealedByOperator,
    /// The datastore holds no key record.
    #[error("Nexus was never initialized, so there is no root key to restore")]
    NeverInitialized,
    /// The id is not one of the key's shards.
    #[error("shard id {id} is out of range: this Nexus's key has shards 1 to {shares}")]
    IdOutOfRange {
        /// The id given.
        id: u8,
        /// The key's share count.
        shares: u8,
    },
    /// Not [`KEY_LEN`] bytes.
    #[error("a shard is {KEY_LEN} bytes, this one has {0}")]
    Length(usize),
    /// Every byte zero.
    #[error("an all-zero shard is not a shard")]
    AllZero,
    /// The keepers unsealed Nexus while this shard was being taken.
    #[error("Nexus unsealed meanwhile; no restore is needed")]
    UnsealedMeanwhile,
    /// This id was submitted already.
    #[error("shard {0} was already submitted; submit a different one")]
    Duplicate(u8),
    /// The threshold of shards does not rebuild the stored key; they were discarded.
    #[error(
        "these shards do not rebuild this Nexus's root key (they are from another Nexus or damaged); the collected shards were discarded, start again"
    )]
    DoesNotRebuild,
}

/// Every recovery shard, by id, for the recover role. Nexus must be ready.
pub async fn recover(nexus: &Nexus, grant: &Grant) -> Result<BTreeMap<u8, Vec<u8>>, ServiceError> {
    grant.for_role(Role::Recover)?;
    let root = nexus.root()?;
    let record = nexus.store.key_record().await?.ok_or_else(|| {
        tracing::error!("ready without a key record");
        ServiceError::Internal
    })?;
    let shards = split(&root, record.threshold, record.shares)?;
    Ok(shards
        .iter()
        .map(|s| (s.id(), s.expose_secret().to_vec()))
        .collect())
}

/// Takes one recovery shard; at the threshold, rebuilds and installs the root key. Only a
/// sealed Nexus accepts shards, each id once; a set that does not rebuild the key named by
/// the stored key-check value is discarded whole.
/// Only the restore role restores.
pub async fn restore(
    nexus: &Nexus,
    grant: &Grant,
    id: u8,
    shard: &[u8],
) -> Result<RestoreResponse, ServiceError> {
    grant.for_role(Role::Restore)?;
    if nexus.keys.root().is_some() {
        return Err(ServiceError::invalid(RestoreError::NotSealed));
    }
    if nexus.keys.phase() == Phase::SealedByOperator {
        return Err(ServiceError::invalid(RestoreError::SealedByOperator));
    }
    let record = nexus
        .store
        .key_record()
        .await?
        .ok_or(ServiceError::invalid(RestoreError::NeverInitialized))?;
    if id == 0 || id > record.shares {
        return Err(ServiceError::invalid(RestoreError::IdOutOfRange {
            id,
            shares: record.shares,
        }));
    }
    let value: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
        shard
            .try_into()
            .map_err(|_| ServiceError::invalid(RestoreError::Length(shard.len())))?,
    );
    if value.iter().all(|b| *b == 0) {
        return Err(ServiceError::invalid(RestoreError::AllZero));
    }
    let check = KeyCheck::from_bytes(&record.key_check)?;
    let threshold = usize::from(record.threshold);

    let mut collected = nexus.keys.recovery().await;
    if nexus.keys.root().is_some() {
        collected.clear();
        return Err(ServiceError::invalid(RestoreError::UnsealedMeanwhile));
    }
    if collected.iter().any(|s| s.id() == id) {
        return Err(ServiceError::invalid(RestoreError::Duplicate(id)));
    }
    collected.push(Shard::new(id, *value)?);
    if collected.len() < threshold {
        return Ok(RestoreResponse {
            collected: collected.len(),
            remaining: threshold - collected.len(),
            restored: false,
        });
    }
    let outcome = combine_any(&collected, record.threshold, &check);
    collected.clear();
    match outcome {
        Ok(root) => {
            install(nexus, root).await.map_err(|error| match error {
                InstallError::Transition(_) if nexus.keys.phase() == Phase::SealedByOperator => {
                    ServiceError::invalid(RestoreError::SealedByOperator)
                }
                InstallError::Transition(_) => {
                    ServiceError::invalid(RestoreError::UnsealedMeanwhile)
                }
                InstallError::Load(error) => error,
            })?;
            tracing::info!("root key restored from recovery shards; keepers will be re-seeded");
            Ok(RestoreResponse {
                collected: threshold,
                remaining: 0,
                restored: true,
            })
        }
        Err(_) => Err(ServiceError::invalid(RestoreError::DoesNotRebuild)),
    }
}
