//! Break-glass recovery (SPIKE's `recover` and `restore`): when every keeper lost its shard,
//! operators rebuild the root key from recovery shards they exported earlier.
//!
//! Recovery shards are the keepers' shards: shares are deterministic for a root key, so
//! exporting them creates no new share set.

use std::collections::BTreeMap;

use nexus_api::model::RestoreResponse;
use nexus_crypto::{KEY_LEN, KeyCheck, Shard, split};
use zeroize::Zeroizing;

use crate::keys::unseal::{combine_any, install};
use crate::service::{Nexus, ServiceError};

impl Nexus {
    /// Every recovery shard, by id. Nexus must be ready.
    pub async fn recover(&self) -> Result<BTreeMap<u8, Vec<u8>>, ServiceError> {
        let root = self.root()?;
        let record = self.store.key_record().await?.ok_or_else(|| {
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
    pub async fn restore(&self, id: u8, shard: &[u8]) -> Result<RestoreResponse, ServiceError> {
        if self.keys.root().is_some() {
            return Err(ServiceError::Invalid(
                "Nexus is not sealed; restore is only for a Nexus that cannot unseal from its keepers".into(),
            ));
        }
        let record = self.store.key_record().await?.ok_or_else(|| {
            ServiceError::Invalid(
                "Nexus was never initialized, so there is no root key to restore".into(),
            )
        })?;
        if id == 0 || id > record.shares {
            return Err(ServiceError::Invalid(format!(
                "shard id {id} is out of range: this Nexus's key has shards 1 to {}",
                record.shares
            )));
        }
        let value: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(shard.try_into().map_err(|_| {
            ServiceError::Invalid(format!(
                "a shard is {KEY_LEN} bytes, this one has {}",
                shard.len()
            ))
        })?);
        if value.iter().all(|b| *b == 0) {
            return Err(ServiceError::Invalid(
                "an all-zero shard is not a shard".into(),
            ));
        }
        let check = KeyCheck::from_bytes(&record.key_check)?;
        let threshold = usize::from(record.threshold);

        let mut collected = self.restoring.lock().await;
        if self.keys.root().is_some() {
            collected.clear();
            return Err(ServiceError::Invalid(
                "Nexus unsealed meanwhile; no restore is needed".into(),
            ));
        }
        if collected.iter().any(|s| s.id() == id) {
            return Err(ServiceError::Invalid(format!(
                "shard {id} was already submitted; submit a different one"
            )));
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
                install(self, root).await?;
                tracing::info!("root key restored from recovery shards; keepers will be re-seeded");
                Ok(RestoreResponse {
                    collected: threshold,
                    remaining: 0,
                    restored: true,
                })
            }
            Err(_) => Err(ServiceError::Invalid(
                "these shards do not rebuild this Nexus's root key (they are from another Nexus or damaged); the collected shards were discarded, start again".into(),
            )),
        }
    }
}
