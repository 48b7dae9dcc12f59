//! The periodic prune: removes from storage the ciphertext of versions past their deletion
//! time (`delete_version_after`), so that an expired version of a secret nobody writes to
//! again does not stay stored for ever. Expired versions are unreadable from their deadline
//! on whether or not they were pruned yet; the prune only frees what no one can read.
//!
//! Runs as a supervised background task ([`common_process::Supervisor::restart`]: it keeps
//! no state, a fresh run starts over). Each round removes at most [`BATCH`] versions per
//! batch and [`MAX_BATCHES`] batches, so a large backlog is worked off over several rounds
//! without holding the datastore for long. Sealed, it prunes nothing: no request can reach
//! the data either, and an operator's seal means leave everything as it is.
//!
//! With several replicas on one PostgreSQL database every replica prunes; the store makes
//! that safe (each version is deleted once, a version not yet expired never:
//! [`crate::store::Store::prune_expired`]).

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditRecord, Decision, timestamp};
use crate::service::Nexus;
use crate::store::{PrunedVersions, StoreError};

/// Versions removed per batch (one database query picks them, then one short transaction
/// per secret removes them).
pub const BATCH: u32 = 500;

/// Batches per round at most; the rest waits for the next round.
pub const MAX_BATCHES: usize = 20;

/// The `route` of the prune's audit lines (not an HTTP route: Nexus itself did it).
pub const AUDIT_ROUTE: &str = "internal/prune_expired";

/// Prunes every `interval` until the task is stopped (first round after one interval).
pub async fn run(nexus: Arc<Nexus>, interval: Duration) -> Result<(), StoreError> {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pruned = prune_round(&nexus).await?;
        if pruned > 0 {
            tracing::info!(pruned, "expired secret versions removed from storage");
        }
    }
}

/// One round: batches of expired versions (as of Nexus's clock) removed until a batch is
/// not full or [`MAX_BATCHES`] ran; each removal counted in the metrics and written to the
/// audit log. Returns how many versions were removed; nothing while sealed.
pub async fn prune_round(nexus: &Nexus) -> Result<u64, StoreError> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        if nexus.root().is_err() {
            break;
        }
        let pruned = nexus.store.prune_expired(nexus.clock.now(), BATCH).await?;
        let mut count = 0;
        for secret in &pruned {
            count += secret.versions.len() as u64;
            record(nexus, secret);
        }
        nexus.metrics.versions_pruned(count);
        total += count;
        if count < u64::from(BATCH) {
            break;
        }
    }
    Ok(total)
}

/// The audit line of one secret's pruned versions: Nexus itself as the caller, the versions
/// in the action (`destroy_expired:1,2`). A line that cannot be written is logged: the data
/// was already unreadable, and the removal is committed either way.
fn record(nexus: &Nexus, secret: &PrunedVersions) {
    let versions: Vec<String> = secret.versions.iter().map(u64::to_string).collect();
    let action = format!("destroy_expired:{}", versions.join(","));
    let request_id = uuid::Uuid::new_v4().to_string();
    let line = AuditRecord {
        time: timestamp(nexus.clock.now()),
        request_id: &request_id,
        caller: "nexus",
        route: AUDIT_ROUTE,
        action: &action,
        path: &secret.path,
        decision: Decision::None,
        status: 200,
        latency_us: 0,
    };
    if let Err(error) = nexus.audit.write(&line) {
        tracing::error!(%error, path = %secret.path, "audit line of a prune not written");
    }
}
