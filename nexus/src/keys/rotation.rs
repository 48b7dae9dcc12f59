//! Root key rotation (`spike operator rotate`): a new root key re-wraps every data key, then
//! goes to the keepers.
//!
//! Records are sealed under data keys and only the data keys are wrapped under the root key,
//! so a rotation rewrites one small blob per record, never a secret. It runs in three steps,
//! each leaving a state the next start can finish:
//!
//! 1. One transaction re-wraps every data key under the new key, stores the new key-check
//!    value, and stores the new key sealed under the previous key's KEK (the rotation
//!    record). A crash before the commit changes nothing.
//! 2. Nexus switches to the new key in memory and wakes the keeper loop, which hands every
//!    keeper its shard of the new key. A crash now leaves keepers with old shards, new
//!    shards, or a mix: on restart Nexus rebuilds whichever key a threshold of them gives,
//!    and from the previous key it opens the record to get the new one ([`recover`]).
//! 3. Once every keeper holds its new shard, the record is deleted, so the new key can no
//!    longer be derived from the old one (nor from old recovery shards).
//!
//! Writers that seal (puts, policy writes) wait while step 1 runs; readers go on, opening a
//! record with whichever of the two keys wraps it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_crypto::{
    CryptoError, KeyCheck, Purpose, RootKey, Sealed, WrappedKey, aad, open, seal, unwrap, wrap,
};
use policies::Role;
use zeroize::Zeroize;

use crate::authz::Grant;
use crate::error::{Conflict, NotReady, ServiceError};
use crate::service::Nexus;
use crate::store::{RotateError, RotationRecord, WrappedRow};

/// How long a request waits for the keeper loop to fetch a key another Nexus rotated.
const KEY_SWITCH_WAIT: Duration = Duration::from_secs(10);

/// Associated data of the sealed new key in the rotation record.
const RECORD_AAD: &[u8] = b"spike-nexus/root-key-rotation/v1";

/// What a rotation did.
#[derive(Debug, Clone, Copy)]
pub struct Rotated {
    /// Data keys re-wrapped (secret versions and policies).
    pub rewrapped: u64,
    /// Time from start to commit.
    pub duration: Duration,
}

/// Why a data key could not be re-wrapped; the rotation stores nothing.
#[derive(Debug, thiserror::Error)]
enum RewrapError {
    /// The stored wrapped key does not open under the current root key.
    #[error(
        "a data key ({table} {key} v{version}) does not unwrap under the root key; nothing was rotated"
    )]
    DoesNotUnwrap {
        /// The record's table.
        table: &'static str,
        /// Its path or name.
        key: String,
        /// Its version.
        version: u64,
    },
    /// Wrapping under the new key failed.
    #[error(transparent)]
    Wrap(CryptoError),
}

/// Re-wraps one data key from `old` to `new`.
fn rewrap(old: &RootKey, new: &RootKey, row: &WrappedRow<'_>) -> Result<Vec<u8>, RewrapError> {
    let ad = aad(row.table, row.key, row.version);
    let data_key = WrappedKey::from_bytes(row.wrapped_key)
        .and_then(|wrapped| unwrap(old, &wrapped, &ad))
        .map_err(|_| RewrapError::DoesNotUnwrap {
            table: row.table,
            key: row.key.to_owned(),
            version: row.version,
        })?;
    wrap(new, &data_key, &ad)
        .map(|w| w.to_bytes())
        .map_err(RewrapError::Wrap)
}

/// Rotates the root key (step 1 and the start of step 2 above); the superuser's.
pub async fn rotate(nexus: &Nexus, grant: &Grant) -> Result<Rotated, ServiceError> {
    grant.for_role(Role::Superuser)?;
    let rotating = nexus
        .keys
        .begin_rotation()
        .await
        .map_err(|_| ServiceError::NotReady(nexus.keys.not_ready()))?;
    let (rotated, _) = rotate_under(nexus, rotating).await?;
    nexus.keys.wake_keeper_loop();
    tracing::info!(
        rewrapped = rotated.rewrapped,
        duration = ?rotated.duration,
        "root key rotated; re-seeding keepers"
    );
    Ok(rotated)
}

/// Step 1 and the switch in memory, under a rotation ticket already taken: returns what it
/// did and the new key. Nobody is woken: the caller hands the new key's shards out (the
/// keeper loop, or a rekey to its new keepers).
pub(super) async fn rotate_under(
    nexus: &Nexus,
    rotating: crate::keys::lifecycle::Rotating<'_>,
) -> Result<(Rotated, Arc<RootKey>), ServiceError> {
    let started = Instant::now();
    let old = rotating.old().clone();
    let current = nexus
        .store
        .key_record()
        .await?
        .ok_or(ServiceError::NotReady(NotReady::NoKeyRecord))?;
    if !KeyCheck::from_bytes(&current.key_check).is_ok_and(|check| check.verify(&old)) {
        return Err(ServiceError::Conflict(Conflict::KeyNotInMemory));
    }
    let new = RootKey::generate()?;
    let record = RotationRecord {
        previous_key_check: current.key_check.clone(),
        sealed_key: seal(&old.derive(Purpose::Kek), RECORD_AAD, new.expose_secret())?.to_bytes(),
    };
    let new_check = KeyCheck::compute(&new)?.to_bytes();
    let rewrapped = nexus
        .store
        .rotate_root_key(
            &current.key_check,
            &new_check,
            &record,
            nexus.clock.now(),
            |row| rewrap(&old, &new, row),
        )
        .await
        .map_err(|error| match error {
            RotateError::Store(error) => error.into(),
            RotateError::KeyChanged => ServiceError::Conflict(Conflict::RotatedMeanwhile),
            RotateError::Rewrap(error) => {
                tracing::error!(%error, "rotation aborted");
                ServiceError::Internal
            }
        })?;
    let new = rotating.commit(new, new_check);
    Ok((
        Rotated {
            rewrapped,
            duration: started.elapsed(),
        },
        new,
    ))
}

/// At unseal: `previous`, rebuilt from keepers still holding shards of the key before an
/// unfinished rotation, opens the rotation record; the new key it holds is returned if it
/// matches `check` (the stored key-check value).
pub fn recover(previous: &RootKey, record: &RotationRecord, check: &KeyCheck) -> Option<RootKey> {
    let sealed = Sealed::from_bytes(&record.sealed_key).ok()?;
    let bytes = open(&previous.derive(Purpose::Kek), RECORD_AAD, &sealed).ok()?;
    let mut key: [u8; nexus_crypto::KEY_LEN] = bytes.as_slice().try_into().ok()?;
    let new = RootKey::from_bytes(key);
    key.zeroize();
    check.verify(&new).then_some(new)
}

/// If another Nexus rotated the root key, switches to the new one: from the rotation record
/// while it exists, else by asking the keeper loop to fetch it (and answering "not ready"
/// meanwhile). `None` if the key in memory is still the stored one.
///
/// With `wait`, a request waits (a few seconds at most) for the keeper loop to fetch it.
pub(crate) async fn adopt_rotated_key(
    nexus: &Nexus,
    wait: bool,
) -> Result<Option<Arc<RootKey>>, ServiceError> {
    let stored = || async {
        let record = nexus
            .store
            .key_record()
            .await?
            .ok_or(ServiceError::Internal)?;
        let check = KeyCheck::from_bytes(&record.key_check)?;
        Ok::<_, ServiceError>((record, check))
    };
    let (_, check) = stored().await?;
    if check.verify(&*nexus.root()?) {
        return Ok(None);
    }
    // Writers wait while the key changes; the check is repeated once they do, since another
    // request may have switched keys meanwhile.
    let rotating = nexus
        .keys
        .begin_rotation()
        .await
        .map_err(|_| ServiceError::NotReady(nexus.keys.not_ready()))?;
    let root = rotating.old().clone();
    let (record, check) = stored().await?;
    if check.verify(&root) {
        return Ok(None);
    }
    if let Some(rotation) = nexus.store.rotation().await?
        && let Some(new) = recover(&root, &rotation, &check)
    {
        nexus.policies().load(&new).await?;
        let new = rotating.commit(new, record.key_check);
        tracing::info!("another Nexus rotated the root key; switched to the new key");
        return Ok(Some(new));
    }
    // The record is gone, so every keeper holds the new key's shards: the keeper loop
    // fetches them.
    drop(rotating);
    nexus.keys.wake_keeper_loop();
    let deadline = tokio::time::Instant::now() + KEY_SWITCH_WAIT;
    while wait && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let root = nexus.root()?;
        if check.verify(&root) {
            return Ok(Some(root));
        }
    }
    Err(ServiceError::NotReady(NotReady::KeyFetching))
}
