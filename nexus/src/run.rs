//! Wiring: SVID source, datastore, keepers, the lifecycle and policy-sync tasks (supervised,
//! [`common_process::supervise`]) and the mTLS listener; then, on SIGTERM or SIGINT (or when
//! a task that cannot be restarted failed), the drain: the listener closes, requests in
//! flight finish within `--drain-timeout`, the audit log is flushed and the keys forgotten.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common_process::{Backoff, Supervisor};

use crate::audit::AuditLog;
use crate::config::Config;
use crate::keys::Lifecycle;
use crate::keys::Seal;
use crate::keys::keepers::Keepers;
use crate::policy::access::Access;
use crate::service::Nexus;
use crate::store::{Backend, Store};

/// Runs Nexus until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    common_process::harden();
    // Both listeners at their limits, plus the datastore, keepers and the Workload API.
    common_process::raise_open_files_limit(
        config.serve_limits().descriptors() + common_net::Limits::METRICS.descriptors() + 256,
    );
    let database_url = config.database_url();
    if config.database_url.is_none() {
        create_private_dir(&config.data_dir)?;
    }
    // Every background task runs under the supervisor: none fails unnoticed. The first is
    // the datastore's writer (SQLite), restarted if it fails (`crate::store::group_commit`).
    let supervisor = Supervisor::new();
    let store = Store::connect_supervised(&database_url, &supervisor)
        .await
        .context("opening the datastore")?;
    let source = identity::workload::x509_source(
        config.spiffe_endpoint_socket.as_deref(),
        Duration::from_secs(30),
    )
    .await
    .context("getting Nexus's SVID from the Workload API")?;
    let roles = config.roles()?;
    let keepers = Keepers::new(
        &config.keepers,
        source.clone(),
        config.keeper_domains()?,
        roles.clone(),
    )?;
    let access = Access::for_roles(roles)?;
    let audit = AuditLog::open(&config.audit_log)?;
    let nexus = Arc::new(
        Nexus::new(
            store,
            Lifecycle::new(config.shamir_threshold, config.keepers.len()),
            access,
            config.max_secret_versions,
            audit,
        )
        .with_cas_required(config.cas_required)
        .with_bundles(source.clone()),
    );

    // Looked at once before the first request, so that the status of a Nexus whose
    // datastore holds a root key is never `uninitialized`, not even in the moment before
    // the keeper loop's first look (an operator reading that would fear the data gone).
    match nexus.store.key_record().await {
        Ok(Some(_)) => nexus.keys.record_found(),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot read the root key record yet; the keeper loop retries");
        }
    }

    // Any SVID of the trust domain, or of a federated one listed in `--trust-domains`, may
    // connect; every route authorises the caller itself.
    let callers = config.callers()?;
    if callers.foreign().next().is_some() {
        let foreign: Vec<String> = callers.foreign().map(ToString::to_string).collect();
        tracing::info!(trust_domains = %foreign.join(","), "accepting callers of federated trust domains");
    }
    let tls = identity::workload::server_config(source, callers, |_: &spiffe::SpiffeId| true)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "nexus listening; unsealing");

    match nexus.store.backend() {
        Backend::Postgres => {
            let (nexus, url) = (nexus.clone(), database_url.clone());
            // Restarted: the listener keeps nothing a fresh run cannot rebuild. Until the
            // new run's LISTEN is in place the cache is distrusted, as after a lost
            // connection (`crate::policy::sync`), so no change goes unseen meanwhile.
            supervisor.restart("policy_sync", Backoff::DEFAULT, move || {
                nexus.access.set_changes_pushed(false);
                crate::policy::sync::run(nexus.clone(), url.clone())
            });
        }
        Backend::Sqlite => {
            // This process is the file's only writer, and its own policy writes announce
            // every change: nothing to listen for.
            nexus.access.set_changes_pushed(true);
        }
    }
    // Every listener's refusals, timeouts and failed handshakes, on the metrics endpoint.
    let net = common_net::NetMetrics::default();
    if let Some(address) = config.metrics_address()? {
        let counted = nexus.clone();
        let refresh = move || {
            let nexus = counted.clone();
            async move {
                if let Ok(count) = nexus.store.secret_count().await {
                    nexus.metrics.set_secrets(count);
                }
            }
        };
        common_metrics::start(
            address,
            crate::metrics::registry(nexus.clone()),
            refresh,
            common_net::Limits::METRICS,
            &net,
            &supervisor,
        )
        .await
        .with_context(|| format!("binding the metrics address {address}"))?;
    }
    // Exit on failure: the keeper loop unseals, re-seeds keepers and rotates the root key;
    // a panic there may leave the lifecycle between two states, and a fresh process
    // unseals from its keepers from a known start.
    supervisor.exit_on_failure(
        "keeper_probes",
        crate::keys::unseal::run(
            nexus.clone(),
            keepers,
            config.shamir_threshold,
            config.keeper_probe_interval,
        ),
    );
    // Restarted: the prune keeps no state; a fresh round starts over from the datastore.
    {
        let (nexus, interval) = (nexus.clone(), config.prune_interval);
        supervisor.restart("prune_expired", Backoff::DEFAULT, move || {
            crate::secrets::prune::run(nexus.clone(), interval)
        });
    }
    let stop = supervisor.stop_requested();
    // Exit on failure, like every listener: a panic in its accept loop must stop the process
    // with a failure, not look like a listener that closed. It ends once requests in flight
    // are answered (or the drain timeout passed), with the listener closed.
    supervisor
        .exit_on_failure(
            "api",
            identity::http::serve(
                listener,
                Arc::new(tls),
                crate::api::router(nexus.clone(), &config.api_limits()),
                identity::http::ServeOptions::new(config.serve_limits(), net.listener("api"))
                    .drain_timeout(config.drain_timeout),
                stop,
            ),
        )
        .ended()
        .await;
    supervisor.shutdown().await;
    shut_down(nexus).await;
    Ok(supervisor.outcome()?)
}

/// After the last request: flushes the audit log to disk, forgets the keys (each zeroized
/// as its last holder lets go) and closes the datastore.
async fn shut_down(nexus: Arc<Nexus>) {
    if let Err(error) = nexus.audit.flush() {
        tracing::error!(%error, "flushing the audit log at shutdown");
    }
    // The in-memory seal is how the lifecycle drops its keys (nothing is written: the
    // datastore's seal is untouched, and the next start unseals from the keepers). It
    // fails only when there is no key to drop (never unsealed, or sealed already).
    let _ = nexus
        .keys
        .seal(Seal {
            by: "shutdown".to_owned(),
            at: nexus.clock.now(),
        })
        .await;
    nexus.cipher_key.store(None);
    nexus.store.close().await;
    let others = Arc::strong_count(&nexus) - 1;
    drop(nexus);
    if others == 0 {
        tracing::info!("audit log flushed, keys zeroized; bye");
    } else {
        // A connection dropped at the drain timeout still holds the state; its keys are
        // gone from the lifecycle all the same.
        tracing::info!(others, "audit log flushed, keys forgotten; bye");
    }
}

/// Creates the data directory readable only by this user.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}
