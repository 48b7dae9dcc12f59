//! Unsealing (DESIGN.md section 4): create the root key on first start, rebuild it from
//! keepers on every later start, then keep keepers seeded (`seeding`).
//!
//! Nexus listens from the first moment; until this module installs the root key, data routes
//! answer 503 `state_not_ready` and `/v1/status` says what Nexus is waiting for
//! ([`super::Waiting`]).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use nexus_crypto::{CryptoError, KeyCheck, RootKey, Shard, combine, split};

use super::keepers::Keepers;
use super::lifecycle::IllegalTransition;
use super::waiting::Waiting;
use crate::error::ServiceError;
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

/// Brings Nexus to ready, then keeps keepers seeded every `probe_interval`; after an
/// operator's seal, waits for it to be lifted and starts over. Runs until the process ends.
///
/// `configured` are the keepers of Nexus's configuration: those of a first start, and of
/// every start until a rekey stores a keeper set of its own, which wins from then on.
pub async fn run(nexus: Arc<Nexus>, configured: Keepers, threshold: u8, probe_interval: Duration) {
    nexus.keepers.store(Some(Arc::new(configured.clone())));
    if nexus.store.backend() == crate::store::Backend::Sqlite {
        // This process is the file's only writer: a rekey claim stored is one that died
        // with an earlier process (its staged shards are harmless, its generation was
        // never committed), and would hold off the next rekey for a minute.
        match nexus.store.clear_rekey_claim().await {
            Ok(true) => tracing::info!("cleared the claim of a rekey that died with its Nexus"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot clear a stale rekey claim"),
        }
    }
    loop {
        obtain_root_key(&nexus, &configured, threshold, probe_interval).await;
        // Returns once the key is gone: an operator sealed Nexus.
        super::seeding::keep_seeded(&nexus, &configured, probe_interval).await;
    }
}

/// The keeper set the datastore names (the configured keepers until a rekey stores its
/// own), made the one in force here, with its Shamir parameters; `None` before the root
/// key exists. Follows a rekey through another replica, or one committed before a crash.
pub(super) async fn follow_keeper_set(
    nexus: &Nexus,
    configured: &Keepers,
) -> Result<Option<(Arc<Keepers>, u8, u8)>, crate::store::StoreError> {
    let Some(stored) = nexus.store.keeper_set().await? else {
        return Ok(None);
    };
    let current = nexus.keepers.load_full();
    let keepers = match current {
        Some(current) if current.generation() == stored.generation => current,
        _ => {
            let keepers = Arc::new(match &stored.urls {
                Some(urls) => configured.with_set(urls, stored.generation),
                None => configured.with_set(&configured.urls(), stored.generation),
            });
            if stored.urls.is_some() && stored.urls.as_deref() != Some(&configured.urls()[..]) {
                tracing::info!(
                    generation = stored.generation,
                    keepers = keepers.all().len(),
                    threshold = stored.threshold,
                    "using the keeper set of the last rekey, not the configured keepers"
                );
            }
            nexus.keepers.store(Some(keepers.clone()));
            // The stored generation is committed: every keeper of the set this Nexus used
            // before, and of the new one, may forget the older generations (a rekey through
            // another replica did so already, one that died before it did not). In the
            // background: an old keeper that is gone must not hold up unsealing.
            if let Some(previous) = current
                && previous.generation() < stored.generation
            {
                let next = keepers.clone();
                tokio::spawn(async move {
                    let not_forgotten = super::rekey::forget_others(&previous, &next).await;
                    if !not_forgotten.is_empty() {
                        tracing::warn!(
                            keepers = ?not_forgotten,
                            "keepers did not confirm forgetting the shards of older keeper sets"
                        );
                    }
                });
            }
            keepers
        }
    };
    nexus
        .keys
        .set_keeper_set(stored.generation, keepers.all().len(), stored.threshold);
    Ok(Some((keepers, stored.threshold, stored.shares)))
}

/// Shares: one per keeper.
pub(super) fn shares(keepers: &Keepers) -> u8 {
    u8::try_from(keepers.all().len()).unwrap_or(u8::MAX)
}

/// Returns once the root key is in memory and the policy cache is loaded, with the Shamir
/// parameters it was split with. While an operator's seal holds, asks no keeper: it checks
/// the stored seal every `probe_interval`, or at once when woken.
async fn obtain_root_key(
    nexus: &Nexus,
    configured: &Keepers,
    threshold: u8,
    probe_interval: Duration,
) {
    let mut started = std::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let record = match nexus.store.key_record().await {
            Ok(record) => record,
            Err(error) => {
                nexus.keys.wait_for(Waiting::Datastore(error));
                backoff.wait().await;
                continue;
            }
        };
        if record.is_some() {
            nexus.keys.record_found();
            match super::operator_seal::follow(nexus).await {
                Ok(false) => {}
                Ok(true) => {
                    tokio::select! {
                        () = tokio::time::sleep(probe_interval) => {}
                        () = nexus.keys.keeper_loop_woken() => {}
                    }
                    started = std::time::Instant::now();
                    continue;
                }
                Err(error) => {
                    nexus.keys.wait_for(Waiting::Datastore(error));
                    backoff.wait().await;
                    continue;
                }
            }
        }
        let keepers = if record.is_some() {
            match follow_keeper_set(nexus, configured).await {
                Ok(Some((keepers, _, _))) => keepers,
                Ok(None) => {
                    backoff.wait().await;
                    continue;
                }
                Err(error) => {
                    nexus.keys.wait_for(Waiting::Datastore(error));
                    backoff.wait().await;
                    continue;
                }
            }
        } else {
            Arc::new(configured.clone())
        };
        let keepers = keepers.as_ref();
        let params = match &record {
            None => (threshold, shares(keepers)),
            Some(record) => (record.threshold, record.shares),
        };
        nexus.keys.set_threshold(params.0);
        if nexus.keys.root().is_some() {
            // Restored by an operator (break-glass) while this loop was waiting.
            tracing::info!("root key restored from recovery shards");
            return;
        }
        if params.1 != shares(keepers) {
            nexus.keys.wait_for(Waiting::ShareCount {
                shares: params.1,
                keepers: keepers.all().len(),
            });
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
            Ok(_) => {
                nexus
                    .metrics
                    .set_unseal_seconds(started.elapsed().as_secs_f64());
                tracing::info!(
                    elapsed = ?started.elapsed(),
                    generation = keepers.generation(),
                    "root key in memory; Nexus is ready"
                );
                return;
            }
            // A restore is installing the key meanwhile: the next round finds it.
            Err(InstallError::Transition(_)) => backoff.wait().await,
            Err(InstallError::Load(error)) => {
                nexus.keys.wait_for(Waiting::Policies(error));
                backoff.wait().await;
            }
        }
    }
}

/// Why a key that passed the key check was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Nexus is not sealed any more (or another install is under way), or an operator
    /// sealed it meanwhile.
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// The policies it seals, or its record, could not be read.
    #[error(transparent)]
    Load(#[from] ServiceError),
}

/// Makes `root` the root key: loads the policies it seals, then opens the data routes (in
/// that order, so no request is judged against an empty policy set), fencing sealed writes
/// with its stored key-check value (if stored yet).
pub async fn install(nexus: &Nexus, root: RootKey) -> Result<Arc<RootKey>, InstallError> {
    let unsealing = nexus.keys.begin_unseal()?;
    nexus.policies().load(&root).await?;
    let record = nexus.store.key_record().await.map_err(ServiceError::from)?;
    let fence = record
        .map(|r| r.key_check)
        .filter(|bytes| KeyCheck::from_bytes(bytes).is_ok_and(|check| check.verify(&root)));
    Ok(unsealing.finish(root, fence)?)
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
            nexus.keys.record_found();
            nexus.keys.wait_for(Waiting::InitialisedElsewhere);
            None
        }
        Err(InitError::Create(why)) => {
            nexus.keys.wait_for(why);
            None
        }
        Err(InitError::Store(error)) => {
            nexus.keys.wait_for(Waiting::Initialise(error));
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
) -> Result<(KeyRecord, RootKey), Waiting> {
    let root = RootKey::generate().map_err(Waiting::Generate)?;
    let shards = split(&root, threshold, shares(keepers)).map_err(Waiting::Split)?;
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
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    if !failures.is_empty() {
        return Err(Waiting::KeepersRefused {
            reached,
            total: keepers.all().len(),
            failures,
        });
    }
    let key_check = KeyCheck::compute(&root)
        .map_err(Waiting::KeyCheck)?
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
pub(super) async fn collect(
    nexus: &Nexus,
    keepers: &Keepers,
    record: &KeyRecord,
) -> Option<RootKey> {
    let check = match KeyCheck::from_bytes(&record.key_check) {
        Ok(check) => check,
        Err(error) => {
            nexus.keys.wait_for(Waiting::CorruptKeyCheck(error));
            return None;
        }
    };
    // After an unfinished rotation, keepers may still hold shards of the previous key.
    let rotation = match nexus.store.rotation().await {
        Ok(rotation) => rotation,
        Err(error) => {
            nexus.keys.wait_for(Waiting::Datastore(error));
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
        let root = super::rotation::recover(&old, rotation.as_ref()?, &check)?;
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
            Err(error) => problems.push(error),
        }
    }
    nexus.keys.set_reachable(reachable);
    nexus
        .keys
        .wait_for(if shards.len() < usize::from(threshold) {
            Waiting::TooFewShards {
                got: shards.len(),
                keepers: keepers.all().len(),
                threshold,
                problems,
            }
        } else {
            Waiting::ShardsDoNotRebuild(shards.len())
        });
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
