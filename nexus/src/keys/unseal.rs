//! The root key lifecycle (DESIGN.md section 4): create it on first start, rebuild it from
//! keepers on every later start, and keep every keeper holding its shard.
//!
//! Nexus listens from the first moment; until this module installs the root key, data routes
//! answer 503 `state_not_ready` and `/v1/status` says what Nexus is waiting for.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use nexus_crypto::{CryptoError, KeyCheck, RootKey, Shard, combine, split};

use crate::error::{NotReady, ServiceError};
use crate::keys::keepers::{Keeper, Keepers};
use crate::service::Nexus;
use crate::store::{InitError, Initialization, KeyRecord};

/// First retry delay while keepers or the datastore are not answering.
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest retry delay: a few hundred milliseconds, so Nexus serves soon after enough
/// keepers return (SPIKE waits up to a minute).
const BACKOFF_CAP: Duration = Duration::from_millis(400);

struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_START)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_CAP);
    }
}

/// Brings Nexus to ready, then keeps keepers seeded every `probe_interval`. Runs until the
/// process ends.
pub async fn run(nexus: Arc<Nexus>, keepers: Keepers, threshold: u8, probe_interval: Duration) {
    let (_, threshold, shares) = obtain_root_key(&nexus, &keepers, threshold).await;
    loop {
        // The current key each round: a rotation here or by another Nexus replaces it.
        // Keepers are re-seeded only with the key the datastore names, never with one
        // another replica has just retired.
        if !key_is_current(&nexus, &keepers).await {
            wait(&nexus, probe_interval).await;
            continue;
        }
        let Some(root) = nexus.keys.root() else {
            return;
        };
        match split(&root, threshold, shares) {
            Ok(shards) => {
                let seeded = reseed(&keepers, &shards).await;
                nexus.keys.set_reachable(seeded);
                if seeded == keepers.all().len() {
                    finish_rotation(&nexus, &root).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot split the root key; keepers will not be re-seeded");
            }
        }
        wait(&nexus, probe_interval).await;
    }
}

async fn wait(nexus: &Nexus, probe_interval: Duration) {
    tokio::select! {
        () = tokio::time::sleep(probe_interval) => {}
        () = nexus.reseed_now.notified() => {}
    }
}

/// Whether the key in memory is the one the datastore names, switching to the stored one
/// first if another Nexus rotated it (from the rotation record, or from the keepers).
async fn key_is_current(nexus: &Nexus, keepers: &Keepers) -> bool {
    if nexus.keys.root().is_none() {
        return false;
    }
    match nexus.adopt_rotated_key(false).await {
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
            nexus.keys.rotate_to(new);
            nexus.store.set_write_fence(Some(record.key_check));
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
                nexus.keys.forget_previous();
                tracing::info!(
                    "root key rotation finished: every keeper holds a shard of the new key"
                );
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot finish the root key rotation yet"),
        },
        Ok(None) => nexus.keys.forget_previous(),
        Err(error) => tracing::debug!(%error, "cannot read the rotation state"),
    }
}

fn shares(keepers: &Keepers) -> u8 {
    u8::try_from(keepers.all().len()).unwrap_or(u8::MAX)
}

/// Returns once the root key is in memory and the policy cache is loaded, with the Shamir
/// parameters it was split with.
async fn obtain_root_key(
    nexus: &Nexus,
    keepers: &Keepers,
    threshold: u8,
) -> (Arc<RootKey>, u8, u8) {
    let started = std::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let record = match nexus.store.key_record().await {
            Ok(record) => record,
            Err(error) => {
                nexus
                    .keys
                    .set_waiting(format!("cannot read the datastore: {error}"));
                backoff.wait().await;
                continue;
            }
        };
        nexus.keys.set_initialized(record.is_some());
        let params = match &record {
            None => (threshold, shares(keepers)),
            Some(record) => (record.threshold, record.shares),
        };
        nexus.keys.set_threshold(params.0);
        if let Some(root) = nexus.keys.root() {
            // Restored by an operator (break-glass) while this loop was waiting.
            tracing::info!("root key restored from recovery shards");
            return (root, params.0, params.1);
        }
        if params.1 != shares(keepers) {
            nexus.keys.set_waiting(format!(
                "the root key was split into {} shares but {} keepers are configured; configure the same keepers, in the same order",
                params.1,
                keepers.all().len()
            ));
        }
        let root = match record {
            None => initialize(nexus, keepers, threshold).await,
            Some(record) => collect(nexus, keepers, &record).await,
        };
        let Some(root) = root else {
            backoff.wait().await;
            continue;
        };
        match install(nexus, root).await {
            Ok(root) => {
                nexus
                    .metrics
                    .set_unseal_seconds(started.elapsed().as_secs_f64());
                tracing::info!(elapsed = ?started.elapsed(), "root key in memory; Nexus is ready");
                return (root, params.0, params.1);
            }
            Err(error) => {
                nexus
                    .keys
                    .set_waiting(format!("cannot load policies: {error}"));
                backoff.wait().await;
            }
        }
    }
}

/// Makes `root` the root key: loads the policies it seals, then opens the data routes (in
/// that order, so no request is judged against an empty policy set).
pub async fn install(nexus: &Nexus, root: RootKey) -> Result<Arc<RootKey>, ServiceError> {
    nexus.policies().load(&root).await?;
    // Sealed writes are fenced with this key's stored key-check value (if stored yet).
    let record = nexus.store.key_record().await?;
    let fence = record
        .map(|r| r.key_check)
        .filter(|bytes| KeyCheck::from_bytes(bytes).is_ok_and(|check| check.verify(&root)));
    nexus.store.set_write_fence(fence);
    Ok(nexus.keys.set_root(root))
}

/// First start: a new root key, one shard to every keeper, then the key-check value, all
/// under the datastore's initialisation lock. Of several replicas starting together on an
/// empty database exactly one creates the key; the others wait, find its record, and unseal
/// from the keepers in the next round.
async fn initialize(nexus: &Nexus, keepers: &Keepers, threshold: u8) -> Option<RootKey> {
    let outcome = nexus
        .store
        .initialize_exclusively(|| create_root_key(nexus, keepers, threshold))
        .await;
    match outcome {
        Ok(Initialization::Created(root)) => {
            tracing::info!(
                threshold,
                shares = shares(keepers),
                "root key created and shared among keepers"
            );
            Some(root)
        }
        Ok(Initialization::Existing(_)) => {
            nexus.keys.set_initialized(true);
            nexus
                .keys
                .set_waiting("another Nexus initialised the datastore; unsealing from keepers");
            None
        }
        Err(InitError::Create(reason)) => {
            nexus.keys.set_waiting(reason);
            None
        }
        Err(InitError::Store(error)) => {
            let why = if error.is_unavailable() {
                " (busy or unreachable; another Nexus may be initialising it)"
            } else {
                ""
            };
            nexus
                .keys
                .set_waiting(format!("cannot initialise the datastore{why}: {error}"));
            None
        }
    }
}

/// Creates a root key and hands every keeper its shard. Every keeper must take its shard
/// before the key is committed, so no shard of a committed key is missing from the start.
/// Returns the record to store, or why Nexus is still uninitialised.
async fn create_root_key(
    nexus: &Nexus,
    keepers: &Keepers,
    threshold: u8,
) -> Result<(KeyRecord, RootKey), String> {
    let root = RootKey::generate().map_err(|e| format!("cannot generate a root key: {e}"))?;
    let shards = split(&root, threshold, shares(keepers))
        .map_err(|e| format!("cannot split the root key: {e}"))?;
    let results = join_all(
        keepers
            .all()
            .iter()
            .zip(&shards)
            .map(|(keeper, shard)| keepers.contribute(keeper, shard)),
    )
    .await;
    let reached = results.iter().filter(|r| r.is_ok()).count();
    nexus.keys.set_reachable(reached);
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.to_string())
        .collect();
    if !failures.is_empty() {
        return Err(format!(
            "uninitialized: every keeper must take its shard of the new root key, {reached} of {} did; {}",
            keepers.all().len(),
            failures.join("; ")
        ));
    }
    let key_check = KeyCheck::compute(&root)
        .map_err(|e| format!("cannot compute the key-check value: {e}"))?
        .to_bytes();
    let record = KeyRecord {
        key_check,
        threshold,
        shares: shares(keepers),
        created_at: nexus.clock.now(),
    };
    Ok((record, root))
}

/// Later starts: shards from keepers until a threshold of them rebuilds the key that the
/// stored key-check value names.
async fn collect(nexus: &Nexus, keepers: &Keepers, record: &KeyRecord) -> Option<RootKey> {
    let check = match KeyCheck::from_bytes(&record.key_check) {
        Ok(check) => check,
        Err(error) => {
            nexus
                .keys
                .set_waiting(format!("the stored key-check value is corrupt: {error}"));
            return None;
        }
    };
    // After an unfinished rotation, keepers may still hold shards of the previous key.
    let rotation = match nexus.store.rotation().await {
        Ok(rotation) => rotation,
        Err(error) => {
            nexus
                .keys
                .set_waiting(format!("cannot read the datastore: {error}"));
            return None;
        }
    };
    let previous = rotation
        .as_ref()
        .and_then(|r| KeyCheck::from_bytes(&r.previous_key_check).ok());
    let rebuild = |shards: &[Shard]| -> Option<RootKey> {
        if let Ok(root) = combine_any(shards, record.threshold, &check) {
            return Some(root);
        }
        let old = combine_any(shards, record.threshold, previous.as_ref()?).ok()?;
        let root = crate::keys::rotation::recover(&old, rotation.as_ref()?, &check)?;
        tracing::info!(
            "rebuilt the previous root key from keepers; recovered the rotated key from the rotation record"
        );
        Some(root)
    };
    // Shards are used as they arrive: a threshold of fast keepers unseals Nexus without
    // waiting for a slow or unreachable one to time out.
    let mut answers: FuturesUnordered<_> = keepers.all().iter().map(|k| keepers.fetch(k)).collect();
    let threshold = record.threshold;
    let mut shards = Vec::new();
    let mut problems = Vec::new();
    let mut reachable = 0;
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(Some(shard)) => {
                reachable += 1;
                shards.push(shard);
                if shards.len() >= usize::from(threshold)
                    && let Some(root) = rebuild(&shards)
                {
                    nexus.keys.set_reachable(reachable);
                    return Some(root);
                }
            }
            Ok(None) => reachable += 1,
            Err(error) => problems.push(error.to_string()),
        }
    }
    nexus.keys.set_reachable(reachable);
    if shards.len() < usize::from(threshold) {
        nexus.keys.set_waiting(format!(
            "sealed: {} of {} keepers returned a shard, {threshold} needed{}{}",
            shards.len(),
            keepers.all().len(),
            if problems.is_empty() { "" } else { "; " },
            problems.join("; ")
        ));
    } else {
        nexus.keys.set_waiting(format!(
            "sealed: the keepers' {} shards do not rebuild this datastore's root key (a keeper holds a shard of another key?)",
            shards.len()
        ));
    }
    None
}

/// Combines shards, tolerating some that are wrong (a keeper holding a shard of another
/// key): tries every `threshold`-subset until one verifies against the key-check value.
pub fn combine_any(
    shards: &[Shard],
    threshold: u8,
    check: &KeyCheck,
) -> Result<RootKey, CryptoError> {
    let t = usize::from(threshold);
    let mut indices: Vec<usize> = (0..t).collect();
    let mut last_error;
    loop {
        let subset: Vec<Shard> = indices
            .iter()
            .filter_map(|&i| Shard::new(shards[i].id(), *shards[i].expose_secret()).ok())
            .collect();
        match combine(&subset, threshold, check) {
            Ok(root) => return Ok(root),
            Err(error) => last_error = error,
        }
        // Next combination in lexicographic order.
        let n = shards.len();
        let Some(i) = (0..t).rev().find(|&i| indices[i] != i + n - t) else {
            return Err(last_error);
        };
        indices[i] += 1;
        for j in i + 1..t {
            indices[j] = indices[j - 1] + 1;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_any_skips_a_wrong_shard() -> Result<(), CryptoError> {
        let root = RootKey::generate()?;
        let check = KeyCheck::compute(&root)?;
        let mut shards = split(&root, 2, 3)?;
        // Keeper 1 holds a shard of some other key.
        let stranger = split(&RootKey::generate()?, 2, 3)?;
        shards[0] = Shard::new(1, *stranger[0].expose_secret())?;
        assert_eq!(combine_any(&shards, 2, &check)?, root);
        // With two wrong shards out of three, no pair verifies.
        shards[1] = Shard::new(2, *stranger[1].expose_secret())?;
        assert!(combine_any(&shards, 2, &check).is_err());
        Ok(())
    }
}
