//! Sealing by an operator (`spike operator seal|unseal`), the incident-response switch: the
//! superuser takes the root key out of Nexus's memory at once, and only the superuser lets
//! it come back from the keepers.
//!
//! The seal is stored before it takes effect here (on the root key's row, `crate::store`),
//! so a restarted Nexus stays sealed, and every replica on the same PostgreSQL database
//! follows it: the change is announced on the policy channel and each replica's listener
//! ([`crate::policy::sync`]) calls [`follow`]; the keeper loop calls it too, every probe
//! interval, in case a notification was lost; and the write fence refuses every sealed
//! write once the seal is stored, whether or not a replica has heard of it yet.
//!
//! The stored seal is the truth and the lifecycle follows it: every change of either side
//! happens under [`Lifecycle::seal_changes`], so a stale read of the datastore can never
//! undo a newer seal in memory.
//!
//! [`Lifecycle::seal_changes`]: super::Lifecycle::seal_changes

use std::time::Duration;

use nexus_api::model::StatusResponse;
use policies::Role;

use super::Phase;
use super::lifecycle::Seal;
use crate::authz::Grant;
use crate::error::{Conflict, ServiceError};
use crate::service::Nexus;
use crate::store::{SealOutcome, StoreError, StoredSeal};

/// How long an unseal waits for the keepers to give Nexus its key back before it answers
/// with the status as it stands.
const UNSEAL_WAIT: Duration = Duration::from_secs(10);

/// Seals Nexus (the superuser's): stores the seal, then drops the root key, the previous
/// one and the cipher key from memory. Answers the status after the seal.
pub async fn seal(nexus: &Nexus, grant: &Grant) -> Result<StatusResponse, ServiceError> {
    grant.for_role(Role::Superuser)?;
    let _changes = nexus.keys.seal_changes().await;
    if let Some(seal) = nexus.keys.operator_seal() {
        return Err(already_sealed(&seal));
    }
    let seal = Seal {
        by: grant.caller().to_string(),
        at: nexus.clock.now(),
    };
    match nexus.store.seal(&seal.by, seal.at).await? {
        SealOutcome::Sealed => {}
        SealOutcome::NeverInitialized => {
            return Err(ServiceError::Conflict(Conflict::NeverInitialized));
        }
        SealOutcome::AlreadySealed(stored) => {
            // Sealed through another replica, and this one had not heard yet.
            let seal = from_store(stored);
            apply(nexus, seal.clone()).await;
            return Err(already_sealed(&seal));
        }
    }
    let by = seal.by.clone();
    apply(nexus, seal).await;
    nexus.metrics.operator_sealed();
    tracing::warn!(
        by,
        "sealed by an operator: the root key is out of memory until `spike operator unseal`"
    );
    Ok(nexus.keys.status())
}

/// Lifts the seal (the superuser's): clears the stored seal, then lets the keeper loop
/// rebuild the key from the keepers. Answers the status once Nexus is ready, or after
/// [`UNSEAL_WAIT`] with the status as it stands (the keeper loop keeps trying).
pub async fn unseal(nexus: &Nexus, grant: &Grant) -> Result<StatusResponse, ServiceError> {
    grant.for_role(Role::Superuser)?;
    {
        let _changes = nexus.keys.seal_changes().await;
        let lifted = nexus.store.unseal().await?;
        // Lifted through another replica already, and this one had not heard yet: still
        // this call's to finish.
        let sealed_here = nexus.keys.lift_seal().is_ok();
        if lifted.is_none() && !sealed_here {
            let status = nexus.keys.status();
            let why = if status.message.is_empty() {
                "it is ready".to_owned()
            } else {
                status.message
            };
            return Err(ServiceError::Conflict(Conflict::NotSealed(why)));
        }
    }
    nexus.metrics.operator_unsealed();
    tracing::warn!(
        by = %grant.caller(),
        "the operator's seal was lifted; unsealing from the keepers"
    );
    let deadline = tokio::time::Instant::now() + UNSEAL_WAIT;
    while nexus.keys.root().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(nexus.keys.status())
}

/// Brings this Nexus in line with the stored seal: seals it if an operator sealed it (through
/// another replica, or before this one started), lifts its seal if an operator lifted it.
/// Returns whether Nexus is sealed by an operator.
pub(crate) async fn follow(nexus: &Nexus) -> Result<bool, StoreError> {
    let _changes = nexus.keys.seal_changes().await;
    match nexus.store.operator_seal().await? {
        Some(stored) => {
            if nexus.keys.phase() != Phase::SealedByOperator {
                let seal = from_store(stored);
                tracing::warn!(
                    by = seal.by,
                    "sealed by an operator (through another Nexus, or before this one started): the root key stays out of memory until `spike operator unseal`"
                );
                apply(nexus, seal).await;
            }
            Ok(true)
        }
        None => {
            if nexus.keys.lift_seal().is_ok() {
                tracing::info!(
                    "the operator's seal was lifted through another Nexus; unsealing from the keepers"
                );
            }
            Ok(false)
        }
    }
}

/// Seals the lifecycle and forgets the cipher key (which the root key unwraps). A lifecycle
/// sealed already stays as it is.
async fn apply(nexus: &Nexus, seal: Seal) {
    // The datastore holds a key record (a seal is stored on it), even if this Nexus has not
    // read it yet.
    nexus.keys.record_found();
    if let Err(error) = nexus.keys.seal(seal).await {
        tracing::debug!(%error, "already sealed");
    }
    nexus.cipher_key.store(None);
}

fn from_store(stored: StoredSeal) -> Seal {
    Seal {
        by: stored.by,
        at: stored.at,
    }
}

fn already_sealed(seal: &Seal) -> ServiceError {
    let seal = seal.to_status();
    ServiceError::Conflict(Conflict::AlreadySealed {
        by: seal.by,
        at: seal.at,
    })
}
