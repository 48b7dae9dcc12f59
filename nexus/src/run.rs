//! Wiring: SVID source, datastore, keepers, the lifecycle and policy-sync tasks and the mTLS
//! listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spiffe::TrustDomain;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::keys::Lifecycle;
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
    let td = TrustDomain::new(&config.trust_domain).context("invalid --trust-domain")?;
    let database_url = config.database_url();
    if config.database_url.is_none() {
        create_private_dir(&config.data_dir)?;
    }
    let store = Store::connect(&database_url)
        .await
        .context("opening the datastore")?;
    let source = identity::workload::x509_source(
        config.spiffe_endpoint_socket.as_deref(),
        Duration::from_secs(30),
    )
    .await
    .context("getting Nexus's SVID from the Workload API")?;
    let keepers = Keepers::new(&config.keepers, source.clone(), td.clone())?;
    let access = Access::new(&config.trust_domain)?;
    let audit = AuditLog::open(&config.audit_log)?;
    let nexus = Arc::new(
        Nexus::new(
            store,
            Lifecycle::new(config.shamir_threshold, config.keepers.len()),
            access,
            config.max_secret_versions,
            audit,
        )
        .with_cas_required(config.cas_required),
    );

    // Any SVID of the trust domain may connect; every route authorises the caller itself.
    let tls = identity::workload::server_config(source, td, |_: &spiffe::SpiffeId| true)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "nexus listening; unsealing");

    let policy_sync = match nexus.store.backend() {
        Backend::Postgres => Some(tokio::spawn(crate::policy::sync::run(
            nexus.clone(),
            database_url.clone(),
        ))),
        Backend::Sqlite => {
            // This process is the file's only writer, and its own policy writes announce
            // every change: nothing to listen for.
            nexus.access.set_changes_pushed(true);
            None
        }
    };
    // Every listener's refusals, timeouts and failed handshakes, on the metrics endpoint.
    let net = common_net::NetMetrics::default();
    let metrics = match config.metrics_address()? {
        Some(address) => {
            let listener = common_metrics::bind(address)
                .await
                .with_context(|| format!("binding the metrics address {address}"))?;
            let mut registry = crate::metrics::registry(nexus.clone());
            net.register(&mut registry);
            let registry = Arc::new(registry);
            let counted = nexus.clone();
            let refresh = move || {
                let nexus = counted.clone();
                async move {
                    if let Ok(count) = nexus.store.secret_count().await {
                        nexus.metrics.set_secrets(count);
                    }
                }
            };
            Some(tokio::spawn(common_metrics::serve(
                listener,
                registry,
                refresh,
                common_net::Limits::METRICS,
                net.listener("metrics"),
                common_process::shutdown_signal(),
            )))
        }
        None => None,
    };
    let lifecycle = tokio::spawn(crate::keys::unseal::run(
        nexus.clone(),
        keepers,
        config.shamir_threshold,
        config.keeper_probe_interval,
    ));
    identity::http::serve(
        listener,
        Arc::new(tls),
        crate::api::router(nexus.clone(), &config.api_limits()),
        identity::http::ServeOptions::new(config.serve_limits(), net.listener("api")),
        common_process::shutdown_signal(),
    )
    .await;
    lifecycle.abort();
    if let Some(task) = metrics {
        task.abort();
    }
    if let Some(task) = policy_sync {
        task.abort();
    }
    nexus.store.close().await;
    Ok(())
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
