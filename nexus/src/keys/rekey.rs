//! Rekey (`spike operator rekey`): a new keeper set and Shamir threshold while Nexus runs,
//! optionally with a new root key; the superuser's.
//!
//! Every keeper holds one shard per generation of the keeper set, and the datastore names
//! the generation in force (with its URLs and threshold, `crate::store`). A rekey from
//! generation `g`:
//!
//! 1. checks the request and that every new keeper answers, then claims the rekey in the
//!    datastore (one at a time, across replicas); with `--new-root-key`, rotates the root
//!    key first ([`super::rotation`], crash-safe on its own);
//! 2. stages: hands every new keeper its shard of generation `g + 1`, beside the shard of
//!    `g` it may hold. A crash here leaves the datastore at `g`, whose keepers still hold
//!    their shards: Nexus unseals from the old set;
//! 3. commits `g + 1`, its URLs and threshold in one transaction (with a new root key, the
//!    rotation record goes in the same transaction: the new keepers hold the new key's
//!    shards). A crash from here on leaves the datastore at `g + 1`, whose keepers all
//!    hold their shards: Nexus unseals from the new set;
//! 4. tells every keeper, old and new, to forget the generations before `g + 1` (an old
//!    keeper that does not answer keeps its old shard until it restarts; the answer names
//!    it).
//!
//! A failure before the commit changes nothing (the staged shards are forgotten again).
//! The keeper loop is held off from staging to forgetting, so it never re-seeds a keeper of
//! the set being retired. Recovery shards exported before follow the old threshold (or
//! key): they must be exported again, and the answer says so.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use nexus_api::model::{RekeyRequest, RekeyResponse};
use nexus_crypto::{KeyCheck, RootKey, split};
use policies::Role;

use super::keepers::Keepers;
use super::lifecycle::{IllegalTransition, Phase};
use crate::authz::Grant;
use crate::error::{Conflict, NotReady, ServiceError};
use crate::service::Nexus;
use crate::store::{ClaimOutcome, RekeyClaim, RekeyCommit};

/// On SQLite, a claim older than this is taken over (it can only be left by this process's
/// predecessor, whose start clears it anyway); far longer than a rekey takes (a few keeper
/// calls of at most [`super::keepers::CALL_TIMEOUT`] each, and one rotation). On PostgreSQL
/// the claim is a lease instead, live exactly while its Nexus's connection is, and a dead
/// Nexus's claim is taken over at once (`crate::store` keeper_set module).
const CLAIM_STALE: Duration = Duration::from_secs(60);

/// Why a rekey request is refused before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    /// No keepers named.
    #[error("name the new keepers (`--keepers URL,...`)")]
    NoKeepers,
    /// More keepers than shard ids.
    #[error("at most 255 keepers, got {0}")]
    TooManyKeepers(usize),
    /// A keeper URL that is not `https://host:port`.
    #[error("keeper URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A keeper named twice.
    #[error("keeper {0} is listed twice")]
    Duplicate(String),
    /// A threshold below 2.
    #[error(
        "the threshold must be at least 2, got {0}: a threshold of 1 would give every keeper the whole key"
    )]
    ThresholdTooLow(u8),
    /// More shards needed than keepers hold.
    #[error("the threshold ({threshold}) cannot exceed the number of keepers ({keepers})")]
    ThresholdAboveKeepers {
        /// The threshold asked for.
        threshold: u8,
        /// The keepers named.
        keepers: usize,
    },
    /// A keeper of the new set did not answer (or refused its shard); nothing changed.
    #[error("keeper {url} is unreachable or refused its shard ({reason}); nothing changed")]
    Unreachable {
        /// The keeper.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Checks a rekey request: 1 to 255 distinct `https://host:port` keepers and
/// `2 <= threshold <= keepers`. Returns the URLs as keepers are addressed (no trailing `/`).
pub fn validate(keepers: &[String], threshold: u8) -> Result<Vec<String>, RekeyError> {
    if keepers.is_empty() {
        return Err(RekeyError::NoKeepers);
    }
    if keepers.len() > usize::from(u8::MAX) {
        return Err(RekeyError::TooManyKeepers(keepers.len()));
    }
    let mut urls: Vec<String> = Vec::with_capacity(keepers.len());
    for url in keepers {
        identity::https_client::HttpsClient::parse_url(url).map_err(|e| RekeyError::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let url = url.trim_end_matches('/').to_owned();
        if urls.iter().any(|u| u.eq_ignore_ascii_case(&url)) {
            return Err(RekeyError::Duplicate(url));
        }
        urls.push(url);
    }
    if threshold < 2 {
        return Err(RekeyError::ThresholdTooLow(threshold));
    }
    if usize::from(threshold) > urls.len() {
        return Err(RekeyError::ThresholdAboveKeepers {
            threshold,
            keepers: urls.len(),
        });
    }
    Ok(urls)
}

/// Rekeys (the superuser's): see the module documentation. Counted in the metrics whether
/// it succeeds or fails.
pub async fn rekey(
    nexus: &Nexus,
    grant: &Grant,
    request: &RekeyRequest,
) -> Result<RekeyResponse, ServiceError> {
    grant.for_role(Role::Superuser)?;
    let outcome = checked_rekey(nexus, grant, request).await;
    match &outcome {
        Ok(done) => {
            nexus.metrics.rekeyed();
            tracing::warn!(
                generation = done.generation,
                keepers = done.keepers,
                threshold = done.threshold,
                new_root_key = done.new_root_key,
                by = %grant.caller(),
                "rekeyed: recovery shards exported before must be exported again"
            );
        }
        Err(error) => {
            nexus.metrics.rekey_failed();
            tracing::warn!(%error, "rekey refused or failed");
        }
    }
    outcome
}

fn refused_transition(nexus: &Nexus, error: IllegalTransition) -> ServiceError {
    match error.from {
        Phase::Rekeying => {
            ServiceError::Conflict(Conflict::RekeyRunning("through this Nexus".to_owned()))
        }
        Phase::Rotating => ServiceError::Conflict(Conflict::RotationUnfinished),
        _ => ServiceError::NotReady(nexus.keys.not_ready()),
    }
}

async fn checked_rekey(
    nexus: &Nexus,
    grant: &Grant,
    request: &RekeyRequest,
) -> Result<RekeyResponse, ServiceError> {
    let urls = validate(&request.keepers, request.threshold).map_err(ServiceError::invalid)?;
    let rekeying = nexus
        .keys
        .begin_rekey()
        .map_err(|e| refused_transition(nexus, e))?;
    let current = nexus
        .keepers
        .load_full()
        .ok_or_else(|| ServiceError::NotReady(nexus.keys.not_ready()))?;
    let stored = nexus
        .store
        .keeper_set()
        .await?
        .ok_or(ServiceError::NotReady(NotReady::NoKeyRecord))?;
    if stored.generation != current.generation() {
        // Rekeyed through another replica; this one's keeper loop has not caught up yet.
        return Err(ServiceError::Conflict(Conflict::KeeperSetChanged));
    }
    if nexus.store.rotation().await?.is_some() {
        return Err(ServiceError::Conflict(Conflict::RotationUnfinished));
    }
    let next = current.with_set(&urls, stored.generation + 1);
    probe(&next).await.map_err(ServiceError::invalid)?;
    let claim = match nexus
        .store
        .claim_rekey(
            stored.generation,
            &grant.caller().to_string(),
            nexus.clock.now(),
            CLAIM_STALE,
        )
        .await?
    {
        ClaimOutcome::Claimed(claim) => claim,
        ClaimOutcome::Running { by, since } => {
            let since = humantime::format_rfc3339_seconds(std::time::SystemTime::from(since));
            return Err(ServiceError::Conflict(Conflict::RekeyRunning(format!(
                "by {by} since {since}"
            ))));
        }
        ClaimOutcome::Moved(_) => return Err(ServiceError::Conflict(Conflict::KeeperSetChanged)),
        ClaimOutcome::NeverInitialized => {
            return Err(ServiceError::NotReady(NotReady::NoKeyRecord));
        }
    };
    let _rounds = nexus.keeper_rounds.lock().await;
    let staged = stage_and_commit(nexus, &rekeying, &current, &next, request, &claim).await;
    let rewrapped = match staged {
        Ok(done) => done,
        Err(error) => {
            if let Err(release) = nexus.store.release_rekey(&claim).await {
                tracing::warn!(error = %release, "cannot release the rekey claim; it expires by itself");
            }
            return Err(error);
        }
    };
    // Committed: the new set is in force here.
    nexus.keepers.store(Some(Arc::new(next.clone())));
    rekeying.finish(next.generation(), urls.len(), request.threshold);
    if request.new_root_key {
        nexus.keys.rotation_finished();
    }
    failpoint("rekey-committed");
    let not_forgotten = forget_others(&current, &next).await;
    Ok(RekeyResponse {
        generation: next.generation(),
        keepers: urls.len(),
        threshold: request.threshold,
        new_root_key: request.new_root_key,
        rewrapped,
        not_forgotten,
        recovery_shards_stale: true,
    })
}

/// Every keeper of `next` answers (a shard or none, either will do).
async fn probe(next: &Keepers) -> Result<(), RekeyError> {
    let answers = join_all(next.all().iter().map(|k| next.fetch(k))).await;
    for (keeper, answer) in next.all().iter().zip(answers) {
        if let Err(error) = answer {
            return Err(RekeyError::Unreachable {
                url: keeper.url.clone(),
                reason: error.to_string(),
            });
        }
    }
    Ok(())
}

/// Steps 1 (the rotation, if asked) to 3. Returns the data keys re-wrapped.
async fn stage_and_commit(
    nexus: &Nexus,
    rekeying: &super::lifecycle::Rekeying<'_>,
    current: &Keepers,
    next: &Keepers,
    request: &RekeyRequest,
    claim: &RekeyClaim,
) -> Result<u64, ServiceError> {
    let (root, rewrapped): (Arc<RootKey>, u64) = if request.new_root_key {
        let rotating = rekeying
            .begin_rotation()
            .await
            .map_err(|e| refused_transition(nexus, e))?;
        let (rotated, root) = super::rotation::rotate_under(nexus, rotating).await?;
        tracing::info!(
            rewrapped = rotated.rewrapped,
            "rekey: root key rotated; handing its shards to the new keepers"
        );
        (root, rotated.rewrapped)
    } else {
        (nexus.root()?, 0)
    };
    let key_check = nexus
        .store
        .key_record()
        .await?
        .ok_or(ServiceError::NotReady(NotReady::NoKeyRecord))?
        .key_check;
    if !KeyCheck::from_bytes(&key_check).is_ok_and(|check| check.verify(&root)) {
        return Err(ServiceError::Conflict(Conflict::KeyNotInMemory));
    }
    let shares = u8::try_from(next.all().len()).unwrap_or(u8::MAX);
    let shards = split(&root, request.threshold, shares)?;
    let results = join_all(
        next.all()
            .iter()
            .zip(&shards)
            .map(|(keeper, shard)| next.contribute(keeper, shard)),
    )
    .await;
    if let Some((keeper, error)) = next
        .all()
        .iter()
        .zip(results)
        .find_map(|(keeper, result)| result.err().map(|e| (keeper, e)))
    {
        // A rekey that lost its lease may have been taken over: what the keepers hold of
        // the next generation may be the other rekey's, so it is left alone.
        if nexus.store.rekey_claim_live(claim).await {
            unstage(current, next).await;
        }
        return Err(rotated_anyway(
            request,
            ServiceError::invalid(RekeyError::Unreachable {
                url: keeper.url.clone(),
                reason: error.to_string(),
            }),
        ));
    }
    failpoint("rekey-staged");
    let committed = nexus
        .store
        .commit_rekey(
            claim,
            &RekeyCommit {
                key_check: &key_check,
                urls: &next.urls(),
                threshold: request.threshold,
                finish_rotation: request.new_root_key,
            },
        )
        .await;
    match committed {
        Ok(true) => Ok(rewrapped),
        Ok(false) => {
            unstage(current, next).await;
            Err(rotated_anyway(
                request,
                ServiceError::Conflict(Conflict::KeeperSetChanged),
            ))
        }
        // Whether it committed is unknown: the staged shards stay (they may be in force).
        Err(error) => Err(error.into()),
    }
}

/// A failure after the rekey's own rotation committed: the new key stands (the keeper loop
/// hands its shards to the old keepers), and the log says so; the answer is the failure.
fn rotated_anyway(request: &RekeyRequest, error: ServiceError) -> ServiceError {
    if request.new_root_key {
        tracing::warn!(
            "the rekey's new root key is in force, but the keeper set did not change; the keeper loop re-seeds the old keepers"
        );
    }
    error
}

/// The rekey did not commit: the keepers of `next` forget its generation again (those of
/// the old set keep theirs).
async fn unstage(current: &Keepers, next: &Keepers) {
    let rollback = current.with_set(&next.urls(), current.generation());
    join_all(rollback.all().iter().map(|k| rollback.retain(k, true))).await;
}

/// Step 4: every keeper of either set forgets the generations before `next`'s. Returns the URLs of
/// those that did not confirm. Also run by a Nexus that finds the datastore at a later
/// generation than its own (a rekey through another replica, or one whose Nexus died
/// before this step).
pub(super) async fn forget_others(current: &Keepers, next: &Keepers) -> Vec<String> {
    let mut urls = next.urls();
    for url in current.urls() {
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    let everyone = next.with_set(&urls, next.generation());
    // Only older generations: a later one may be staged by a rekey in progress elsewhere.
    let answers = join_all(everyone.all().iter().map(|k| everyone.retain(k, false))).await;
    everyone
        .all()
        .iter()
        .zip(answers)
        .filter_map(|(keeper, answer)| {
            answer.err().map(|error| {
                tracing::warn!(%error, "a keeper did not confirm forgetting its older shards");
                keeper.url.clone()
            })
        })
        .collect()
}

/// A test-only crash point: in debug builds, if `SPIKE_NEXUS_FAILPOINT` names `point`, the
/// process aborts there (no cleanup, as `kill -9`), so the crash suite can stop a rekey
/// between its steps. Release builds ignore it.
fn failpoint(point: &str) {
    if cfg!(debug_assertions)
        && std::env::var("SPIKE_NEXUS_FAILPOINT").is_ok_and(|name| name == point)
    {
        tracing::error!(point, "test failpoint reached: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn requests_are_checked_before_anything_changes() {
        let four = urls(&[
            "https://k1:1",
            "https://k2:2/",
            "https://k3:3",
            "https://k4:4",
        ]);
        assert_eq!(
            validate(&four, 3),
            Ok(urls(&[
                "https://k1:1",
                "https://k2:2",
                "https://k3:3",
                "https://k4:4"
            ]))
        );
        assert_eq!(validate(&[], 2), Err(RekeyError::NoKeepers));
        assert_eq!(validate(&four, 0), Err(RekeyError::ThresholdTooLow(0)));
        assert_eq!(validate(&four, 1), Err(RekeyError::ThresholdTooLow(1)));
        assert_eq!(
            validate(&four, 5),
            Err(RekeyError::ThresholdAboveKeepers {
                threshold: 5,
                keepers: 4
            })
        );
        assert_eq!(
            validate(&urls(&["https://k1:1", "https://k2:2", "https://k1:1/"]), 2),
            Err(RekeyError::Duplicate("https://k1:1".into()))
        );
        assert!(matches!(
            validate(&urls(&["http://k1:1", "https://k2:2"]), 2),
            Err(RekeyError::BadUrl { url, .. }) if url == "http://k1:1"
        ));
        let many: Vec<String> = (0..256).map(|i| format!("https://k{i}:1")).collect();
        assert_eq!(validate(&many, 2), Err(RekeyError::TooManyKeepers(256)));
        assert_eq!(
            RekeyError::ThresholdAboveKeepers {
                threshold: 5,
                keepers: 4
            }
            .to_string(),
            "the threshold (5) cannot exceed the number of keepers (4)"
        );
    }
}
