//! Once Nexus is ready: every keeper keeps holding its shard of the key in force. Every
//! probe interval (or at once when woken), the keeper loop checks that the key in memory is
//! the one the datastore names (switching to another replica's rotated key first), re-seeds
//! keepers that lost their shard or hold a wrong one, and finishes a rotation once every
//! keeper holds the new key's shard.

use std::time::Duration;

use futures::future::join_all;
use nexus_crypto::{KeyCheck, RootKey, Shard, split};

use super::keepers::{Keeper, Keepers};
use super::unseal::collect;
use crate::error::{NotReady, ServiceError};
use crate::service::Nexus;

/// Keeps keepers seeded with the key in force. Returns once the key is gone: an operator
/// sealed Nexus (through this replica or another).
///
/// Each round follows the keeper set the datastore names (a rekey through another replica
/// changes it) and holds [`Nexus::keeper_rounds`], so a rekey here never races a round.
pub(super) async fn keep_seeded(nexus: &Nexus, configured: &Keepers, probe_interval: Duration) {
    loop {
        let round = nexus.keeper_rounds.lock().await;
        let keepers = match super::unseal::follow_keeper_set(nexus, configured).await {
            Ok(Some(set)) => set,
            Ok(None) => {
                drop(round);
                wait(nexus, probe_interval).await;
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "cannot read the keeper set");
                drop(round);
                wait(nexus, probe_interval).await;
                continue;
            }
        };
        let (keepers, threshold, shares) = (keepers.0.as_ref(), keepers.1, keepers.2);
        // The key is gone (sealed here), or the stored seal says an operator sealed Nexus
        // through another replica and the notification did not arrive: the keeper loop goes
        // back to waiting for the seal to be lifted.
        let sealed_elsewhere = super::operator_seal::follow(nexus).await.unwrap_or(false);
        if sealed_elsewhere || nexus.keys.root().is_none() {
            return;
        }
        // The current key each round: a rotation here or by another Nexus replaces it.
        // Keepers are re-seeded only with the key the datastore names, never with one
        // another replica has just retired.
        if !key_is_current(nexus, keepers).await {
            drop(round);
            wait(nexus, probe_interval).await;
            continue;
        }
        let Some(root) = nexus.keys.root() else {
            return;
        };
        match split(&root, threshold, shares) {
            Ok(shards) => {
                let seeded = reseed(keepers, &shards).await;
                nexus.keys.set_reachable(seeded);
                if seeded == keepers.all().len() {
                    finish_rotation(nexus, &root).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot split the root key; keepers will not be re-seeded");
            }
        }
        drop(round);
        wait(nexus, probe_interval).await;
    }
}

async fn wait(nexus: &Nexus, probe_interval: Duration) {
    tokio::select! {
        () = tokio::time::sleep(probe_interval) => {}
        () = nexus.keys.keeper_loop_woken() => {}
    }
}

/// Whether the key in memory is the one the datastore names, switching to the stored one
/// first if another Nexus rotated it (from the rotation record, or from the keepers).
async fn key_is_current(nexus: &Nexus, keepers: &Keepers) -> bool {
    if nexus.keys.root().is_none() {
        return false;
    }
    match super::rotation::adopt_rotated_key(nexus, false).await {
        Ok(_) => true,
        Err(ServiceError::NotReady(NotReady::KeyFetching)) => {
            // The record is gone: every keeper already holds the new key's shards.
            let Ok(Some(record)) = nexus.store.key_record().await else {
                return false;
            };
            let Some(new) = collect(nexus, keepers, &record).await else {
                return false;
            };
            if let Err(error) = nexus.policies().load(&new).await {
                tracing::warn!(%error, "cannot load policies under the rotated key yet");
                return false;
            }
            let Ok(rotating) = nexus.keys.begin_rotation().await else {
                return false;
            };
            rotating.commit(new, record.key_check);
            tracing::info!("another Nexus rotated the root key; fetched the new key from keepers");
            true
        }
        Err(error) => {
            tracing::debug!(%error, "cannot check the stored root key");
            false
        }
    }
}

/// Every keeper holds a shard of `root`: an unfinished rotation to `root` is finished. A
/// rotation committed while the keepers were being given `root` is not: its record is the
/// only way from `root` (all the keepers hold) to its new key until they hold that one.
async fn finish_rotation(nexus: &Nexus, root: &RootKey) {
    let key_check = match nexus.store.key_record().await {
        Ok(Some(record)) => record.key_check,
        Ok(None) => return,
        Err(error) => {
            tracing::debug!(%error, "cannot read the root key record");
            return;
        }
    };
    if !KeyCheck::from_bytes(&key_check).is_ok_and(|check| check.verify(root)) {
        // Rotated again meanwhile: the next round seeds the new key.
        return;
    }
    match nexus.store.rotation().await {
        Ok(Some(_)) => match nexus.store.finish_rotation(&key_check).await {
            Ok(true) => {
                nexus.keys.rotation_finished();
                tracing::info!(
                    "root key rotation finished: every keeper holds a shard of the new key"
                );
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot finish the root key rotation yet"),
        },
        Ok(None) => nexus.keys.rotation_finished(),
        Err(error) => tracing::debug!(%error, "cannot read the rotation state"),
    }
}

/// Makes sure every keeper holds its shard: one that lost it (restarted) or holds a wrong
/// one gets it again. Returns how many keepers answered.
async fn reseed(keepers: &Keepers, shards: &[Shard]) -> usize {
    let rounds = keepers.all().iter().map(|keeper| async move {
        let shard = shards.iter().find(|s| s.id() == keeper.id)?;
        reseed_one(keepers, keeper, shard).await
    });
    join_all(rounds).await.into_iter().flatten().count()
}

async fn reseed_one(keepers: &Keepers, keeper: &Keeper, shard: &Shard) -> Option<()> {
    match keepers.fetch(keeper).await {
        Ok(Some(held)) if held == *shard => Some(()),
        Ok(held) => {
            let why = if held.is_some() {
                "a wrong shard"
            } else {
                "no shard"
            };
            match keepers.contribute(keeper, shard).await {
                Ok(()) => {
                    tracing::info!(keeper = keeper.id, url = %keeper.url, "keeper held {why}; re-seeded it");
                    Some(())
                }
                Err(error) => {
                    tracing::warn!(%error, "re-seeding a keeper failed");
                    None
                }
            }
        }
        Err(error) => {
            tracing::debug!(%error, "keeper unreachable");
            None
        }
    }
}
