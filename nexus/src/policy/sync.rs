//! Keeping the policy cache current when several Nexus replicas share one database, so
//! that a grant revoked through one replica is refused by every other as soon as the change
//! notification reaches it. PostgreSQL sends it as the change commits, but the replica that
//! made the change does not wait for the others to hear it: a request that reaches another
//! replica in that window (well under a millisecond on an idle host, longer on a starved
//! one) is still judged by the set before the change.
//!
//! Every policy change increments the stored policy generation in its own transaction
//! ([`crate::store`]); on PostgreSQL a trigger sends the new generation on
//! [`POLICY_CHANNEL`]. Each replica runs [`run`]: a `LISTEN` on its own connection that
//! announces each generation to the cache ([`crate::policy::access`]) and reloads it. Requests judged
//! by policies first call [`Policies::current`], which reloads a stale cache before
//! any decision, so a request that arrives between a notification and the end of its reload
//! waits for the reload instead of being judged by the old set.
//!
//! # When the listener is down
//!
//! A notification sent while the listener is disconnected is lost for good. So from the
//! moment the connection is known to be lost until it is back (LISTEN re-issued, then the
//! stored generation read), the cache is not trusted: every policy decision first reads the
//! stored generation, one indexed single-row read, and reloads if it moved. We chose this
//! over refusing every request with 503 because it is just as safe (each decision sees every
//! change committed before it) while Nexus stays available through a lost listener
//! connection; if the database itself is down, that read fails and the request gets 503
//! anyway. The superuser is judged by role, not policies, and never waits for either.
//!
//! A connection can also die silently (a NAT or firewall dropping an idle flow: no reset
//! arrives). Each replica therefore pings the channel every [`PING_INTERVAL`]; a listener
//! that hears nothing, not even pings, for [`SILENCE_LIMIT`] is presumed dead, distrusted
//! and replaced. Only in that case can a change go unseen, for at most [`SILENCE_LIMIT`].
//!
//! The same channel carries [`SEAL_NOTICE`] when an operator seals or unseals Nexus through
//! any replica; each replica's listener then brings its own lifecycle in line with the
//! stored seal ([`crate::keys::operator_seal`]), and does so again after every reconnect.
//!
//! SQLite is written by this process alone: its own writes announce every change, so the
//! cache is trusted from the start and no listener runs.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nexus_crypto::RootKey;
use sqlx::postgres::PgListener;

use super::Policies;
use super::access::Change;
use super::name::to_policy;
use crate::error::{NotReady, ServiceError};
use crate::keys::sealing;
use crate::service::Nexus;
use crate::store::{POLICY_CHANNEL, SEAL_NOTICE};

/// How often this replica pings the policy channel.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Silence after which a listener connection is presumed dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(6);
/// The payload of a ping (generations are numbers).
const PING: &str = "ping";
/// Longest wait between reconnection attempts.
const RECONNECT_CAP: Duration = Duration::from_secs(2);

impl Policies<'_> {
    /// Makes sure the policy cache reflects every policy change committed so far, before it
    /// judges a request. Fails closed: 503 if that cannot be established.
    pub async fn current(&self) -> Result<(), ServiceError> {
        let (nexus, access) = (self.nexus, &self.nexus.access);
        if !access.changes_pushed() {
            let stored = nexus.store.policy_generation().await?;
            access.announce(stored);
        }
        let wanted = access.announced();
        if access.generation() >= wanted {
            return Ok(());
        }
        let root = nexus.root()?;
        self.refresh(&root).await?;
        if access.generation() < wanted {
            // Only if the stored generation went backwards (a database restored from an
            // older backup): refuse rather than judge by a set of unknown age.
            tracing::error!(
                wanted,
                loaded = access.generation(),
                "the stored policy generation is behind one seen earlier; restart Nexus after restoring its database"
            );
            return Err(ServiceError::NotReady(NotReady::PolicyResync));
        }
        Ok(())
    }

    /// Records `change`, which this process committed at `generation`, and brings the cache
    /// up to date, so the writer's next request already sees it: in place when the cache
    /// held the generation just before, else by a reload (see [`Access::apply`]).
    ///
    /// [`Access::apply`]: super::access::Access::apply
    pub(crate) async fn changed(
        &self,
        root: &RootKey,
        generation: u64,
        change: Change,
    ) -> Result<(), ServiceError> {
        let access = &self.nexus.access;
        access.announce(generation);
        access.apply(generation, change);
        self.refresh(root).await
    }

    /// Reloads the cache unless it is current; one reload at a time.
    pub(crate) async fn refresh(&self, root: &RootKey) -> Result<(), ServiceError> {
        let _one = self.nexus.access.reload_lock().await;
        if self.nexus.access.is_current() {
            return Ok(());
        }
        self.load(root).await
    }

    /// Decrypts every stored policy and swaps the access cache to them, labelled with the
    /// policy generation they reflect.
    pub async fn load(&self, root: &RootKey) -> Result<(), ServiceError> {
        let nexus = self.nexus;
        // The policies and their generation from one snapshot: the set is exactly that
        // generation, so the next change this process commits can be applied to it in
        // place. (Read apart, while other writers committed, the set used to be labelled
        // inexact; every later change then reloaded the whole set, and 16 concurrent
        // writers filling 1,000 policies could take minutes.)
        let (generation, stored_policies) = nexus.store.policies_at_generation().await?;
        let mut loaded = Vec::new();
        for stored in stored_policies {
            let request = nexus.open(root, |key| {
                sealing::open_policy(key, &stored.name, &stored.sealed)
            })?;
            match to_policy(&request) {
                Ok(policy) => loaded.push(policy),
                Err(error) => {
                    tracing::error!(policy = %stored.name, %error, "stored policy is invalid; ignoring it");
                }
            }
        }
        let count = loaded.len();
        let installed = nexus
            .access
            .install(generation, loaded, true)
            .map_err(|error| {
                tracing::error!(%error, "stored policies do not compile");
                ServiceError::Internal
            })?;
        if installed {
            tracing::debug!(policies = count, generation, "policy cache rebuilt");
        }
        Ok(())
    }
}

/// Keeps this replica's policy cache in step with the other replicas' changes (PostgreSQL
/// only). Runs until the process ends.
pub async fn run(nexus: Arc<Nexus>, url: String) {
    tokio::join!(ping(&nexus), listen(&nexus, &url));
}

/// Pings the channel, so every listener, this replica's included, hears something often.
async fn ping(nexus: &Nexus) {
    loop {
        if let Err(error) = nexus.store.notify_policy_listeners(PING).await {
            tracing::debug!(%error, "cannot ping the policy channel");
        }
        tokio::time::sleep(PING_INTERVAL).await;
    }
}

/// Listens, and reconnects whenever the connection is lost or falls silent.
async fn listen(nexus: &Nexus, url: &str) {
    let mut delay = Duration::from_millis(50);
    loop {
        let heard = Mutex::new(Instant::now());
        let why = tokio::select! {
            error = session(nexus, url, &heard) => error,
            () = silence(&heard) => format!("nothing heard for {SILENCE_LIMIT:?}; the connection is presumed dead"),
        };
        if nexus.access.changes_pushed() {
            nexus.access.set_changes_pushed(false);
            tracing::warn!(
                reason = %why,
                "lost the policy change listener; every policy decision reads the stored policy generation until it is back"
            );
            delay = Duration::from_millis(50);
        } else {
            tracing::debug!(reason = %why, "cannot listen for policy changes yet");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_CAP);
    }
}

/// One listener connection: LISTEN, catch up, then apply notifications until the connection
/// fails. Returns why it ended.
async fn session(nexus: &Nexus, url: &str, heard: &Mutex<Instant>) -> String {
    let mut listener = match PgListener::connect(url).await {
        Ok(listener) => listener,
        Err(error) => return format!("connecting: {error}"),
    };
    // A lost connection ends the session; the next one is built from scratch, LISTEN first.
    listener.eager_reconnect(false);
    if let Err(error) = listener.listen(POLICY_CHANNEL).await {
        return format!("LISTEN {POLICY_CHANNEL}: {error}");
    }
    mark(heard);
    // LISTEN is in force: every change committed from now on will be notified, and every
    // change committed before is counted in the generation read next. Nothing falls between.
    let stored = match nexus.store.policy_generation().await {
        Ok(stored) => stored,
        Err(error) => return format!("reading the policy generation: {error}"),
    };
    nexus.access.announce(stored);
    nexus.access.set_changes_pushed(true);
    tracing::info!(generation = stored, "listening for policy changes");
    follow_seal(nexus).await;
    refresh_if_unsealed(nexus).await;
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                mark(heard);
                if let Ok(generation) = notification.payload().parse::<u64>() {
                    tracing::debug!(generation, "policy change announced");
                    nexus.access.announce(generation);
                    refresh_if_unsealed(nexus).await;
                } else if notification.payload() == SEAL_NOTICE {
                    follow_seal(nexus).await;
                }
            }
            Ok(None) => return "the connection was closed".into(),
            Err(error) => return error.to_string(),
        }
    }
}

/// An operator sealed or unsealed Nexus through some replica: this one follows at once. A
/// failure is left to the keeper loop, which checks the stored seal every probe interval.
async fn follow_seal(nexus: &Nexus) {
    if let Err(error) = crate::keys::operator_seal::follow(nexus).await {
        tracing::warn!(%error, "cannot read the operator's seal; the keeper loop will retry");
    }
}

/// Reloads a stale cache now, if there is a root key to open policies with (until there
/// is, unsealing loads them). A failure is left to the next request, which reloads itself.
async fn refresh_if_unsealed(nexus: &Nexus) {
    let Some(root) = nexus.keys.root() else {
        return;
    };
    if let Err(error) = nexus.policies().refresh(&root).await {
        tracing::warn!(%error, "reloading policies after a change failed; requests will retry");
    }
}

fn mark(heard: &Mutex<Instant>) {
    *heard.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
}

/// Completes once nothing was heard for [`SILENCE_LIMIT`].
async fn silence(heard: &Mutex<Instant>) {
    loop {
        let last = *heard.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = last + SILENCE_LIMIT;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}
