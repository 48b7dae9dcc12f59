//! `spire-server run`: opens the datastore, loads the CA and the JWT signing key, publishes
//! them in the bundle, starts their rotation ([`crate::rotation`]) and serves the agent API
//! (mTLS, TCP) and the admin API (Unix socket) until SIGINT or SIGTERM, or until a
//! background task that cannot be restarted failed (then it exits non-zero). At shutdown
//! every listener stops accepting and its requests in flight get `-drainTimeout` to finish.
//! Background tasks run under a [`Supervisor`], each with its policy said where it is
//! started.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use common_net::HttpServer;
use common_net::unix::unix_incoming;
use common_process::{Backoff, Supervisor};
use futures::FutureExt;
use identity::http::ServeOptions;
use identity::svid_tls::{self, ClientAuth, SvidStore};
use spiffe::SpiffeId;
use spire_proto::server::admin_server::AdminServer;
use spire_proto::server::agent_server::AgentServer;
use tokio::net::{TcpListener, UnixListener};
use tonic::service::Routes;
use tower::Layer;

use crate::api::admin::AdminService;
use crate::api::agent::AgentService;
use crate::api::authz::AuthorizeLayer;
use crate::ca::Authorities;
use crate::config::{ServerConfig, ServingCertFiles};
use crate::datastore::Datastore;
use crate::rotation;
use crate::serving_cert::ServingCert;
use crate::state::ServerState;

/// Runs the server until a shutdown signal arrives.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    create_private_dir(&config.data_dir)?;
    let limits = config.limits;
    common_process::raise_open_files_limit(
        [
            limits.agent_api,
            limits.bundle_endpoint,
            limits.admin,
            limits.metrics,
        ]
        .iter()
        .map(common_net::Limits::descriptors)
        .sum::<u64>()
            + 256,
    );
    let datastore = Datastore::connect(&config.datastore_url)
        .await
        .context("opening the datastore")?;
    let keys = crate::ca::keys::open(&config.key_manager, &config.data_dir)
        .context("opening the key manager")?;
    let upstream = config
        .upstream_authority
        .clone()
        .map(crate::ca::upstream::DiskUpstream::open)
        .transpose()
        .context("loading the upstream authority")?
        .map(Arc::new);
    let authorities = Authorities::open(
        &config.data_dir,
        &config.trust_domain,
        config.ca_ttl,
        keys,
        upstream,
    )
    .context("loading the CA and the JWT signing key")?;
    let x509pop = config
        .x509pop_ca_bundle
        .as_deref()
        .map(crate::x509pop::X509PopAttestor::load)
        .transpose()?;
    let state = Arc::new(ServerState {
        config,
        datastore,
        authorities,
        x509pop,
        metrics: crate::metrics::ServerMetrics::default(),
        clock: identity::clock::Clock::system(),
    });
    let bundle = rotation::publish_authorities(&state)
        .await
        .context("publishing the trust bundle")?;
    let store = Arc::new(SvidStore::new(&bundle.x509_authorities)?);
    let renew_at = rotation::refresh_server_svid(&state, &store)?;
    // Every background task runs under the supervisor: none fails unnoticed.
    let supervisor = Supervisor::new();
    {
        let (state, store, mut renew_at) = (state.clone(), store.clone(), Some(renew_at));
        // Restarted: rotation keeps nothing a fresh run cannot read back from the key
        // manager and the datastore; a restarted run renews the server's SVID at once, as it
        // cannot know when the failed run last did.
        supervisor.restart("ca_rotation", Backoff::DEFAULT, move || {
            rotation::run(state.clone(), store.clone(), renew_at.take().unwrap_or(0))
        });
    }

    // Agents attest without a certificate; afterwards they must present an agent SVID.
    let td = state.config.trust_domain.clone();
    let agents_only: svid_tls::Authorizer = Arc::new(move |peer: &SpiffeId| {
        peer.trust_domain() == &td && peer.path().starts_with("/spire/agent/")
    });
    let tls = svid_tls::server_config(store.clone(), ClientAuth::Optional(agents_only))?;
    let tcp = TcpListener::bind(state.config.bind_addr)
        .await
        .with_context(|| format!("binding the agent API to {}", state.config.bind_addr))?;
    let tcp_addr = tcp.local_addr()?;
    let unix = bind_admin_socket(&state.config.socket_path)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServer<AdminService>>().await;

    // Every listener's refusals, timeouts and failed handshakes, on the metrics endpoint.
    let net = common_net::NetMetrics::default();
    if let Some(address) = state.config.metrics_address {
        let counted = state.clone();
        common_metrics::start(
            address,
            crate::metrics::registry(&state),
            move || crate::metrics::refresh(counted.clone()),
            limits.metrics,
            &net,
            &supervisor,
        )
        .await
        .with_context(|| format!("binding the metrics address {address}"))?;
    }

    if let Some(endpoint) = state.config.bundle_endpoint.clone() {
        let listener = TcpListener::bind(endpoint.address)
            .await
            .with_context(|| format!("binding the bundle endpoint to {}", endpoint.address))?;
        let (profile, tls) = match &endpoint.web_cert {
            None => (
                "https_spiffe",
                svid_tls::server_config(store.clone(), ClientAuth::None)?,
            ),
            Some(files) => ("https_web", web_tls(files, &supervisor)?),
        };
        tracing::info!(address = %listener.local_addr()?, profile, "bundle endpoint ready");
        supervisor.exit_on_failure(
            "bundle_endpoint",
            crate::bundle_endpoint::serve(
                state.clone(),
                Arc::new(tls),
                listener,
                endpoint.refresh_hint,
                ServeOptions::new(limits.bundle_endpoint, net.listener("bundle_endpoint"))
                    .drain_timeout(state.config.drain_timeout),
                common_process::shutdown_signal(),
            ),
        );
    }
    if let Some(oidc) = state.config.oidc_discovery.clone() {
        let listener = TcpListener::bind(oidc.address)
            .await
            .with_context(|| format!("binding OIDC discovery to {}", oidc.address))?;
        tracing::info!(address = %listener.local_addr()?, tls = oidc.tls.is_some(), "OIDC discovery ready");
        let tls = oidc
            .tls
            .as_ref()
            .map(|files| web_tls(files, &supervisor))
            .transpose()?;
        supervisor.exit_on_failure(
            "oidc_discovery",
            crate::oidc::serve(
                state.clone(),
                oidc.domains,
                tls,
                listener,
                ServeOptions::new(limits.oidc_discovery, net.listener("oidc_discovery"))
                    .drain_timeout(state.config.drain_timeout),
                common_process::shutdown_signal(),
            ),
        );
    }
    {
        let (state, tasks) = (state.clone(), supervisor.clone());
        // Restarted: the relationships are read from the datastore on every round; a
        // restart starts each fetch task anew.
        supervisor.restart("federation", Backoff::DEFAULT, move || {
            crate::federation::run_relationships(state.clone(), tasks.clone())
        });
    }

    // Both APIs stop together: on SIGTERM, or when a task that cannot be restarted failed
    // (one of them included).
    let stop = supervisor.stop_requested().shared();
    // Both APIs on the shared bounded listeners: every phase of a connection has a limit.
    // Each serves only what the authorisation table allows its caller. Exit on failure, like
    // every listener: a panic in an accept loop must stop the process with a failure, not
    // look like a listener that closed.
    let agent_api = supervisor.exit_on_failure(
        "agent_api",
        identity::http::serve(
            tcp,
            Arc::new(tls),
            AuthorizeLayer::new(state.clone()).layer(Routes::new(AgentServer::new(
                AgentService::new(state.clone()),
            ))),
            ServeOptions::new(limits.agent_api, net.listener("agent_api"))
                .drain_timeout(state.config.drain_timeout)
                .grpc(),
            stop.clone(),
        ),
    );
    let admin_metrics = net.listener("admin");
    let admin_api = supervisor.exit_on_failure(
        "admin_api",
        HttpServer::new(limits.admin, admin_metrics.clone())
            .drain_timeout(state.config.drain_timeout)
            .http2_only()
            .serve(
                unix_incoming(unix, &limits.admin, admin_metrics),
                AuthorizeLayer::new(state.clone()).layer(
                    Routes::new(health_service)
                        .add_service(AdminServer::new(AdminService::new(state.clone()))),
                ),
                stop,
            ),
    );
    tracing::info!(
        trust_domain = %state.config.trust_domain,
        address = %tcp_addr,
        socket = %state.config.socket_path.display(),
        "server ready"
    );
    // Each returns once its requests in flight are answered (or the drain timeout passed).
    tokio::join!(agent_api.ended(), admin_api.ended());
    supervisor.shutdown().await;
    let _ = std::fs::remove_file(&state.config.socket_path);
    state.datastore.close().await;
    Ok(supervisor.outcome()?)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Binds the admin socket with mode 0600 (in a 0700 directory when the server creates it),
/// replacing a stale socket file.
///
/// `bind` creates the socket file with the umask's mode, often wider than 0600. So the socket
/// is bound inside a fresh 0700 directory beside `path`, narrowed to 0600 there, and renamed
/// into place: at `path` it never exists with a wider mode, whatever the umask and whoever
/// may reach `path`'s directory.
fn bind_admin_socket(path: &Path) -> anyhow::Result<UnixListener> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(parent)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let staging = tempfile::Builder::new()
        .prefix(".admin-socket-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("creating a private directory in {}", parent.display()))?;
    let staged = staging.path().join("api.sock");
    let listener = UnixListener::bind(&staged)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, path)
        .with_context(|| format!("moving the admin socket to {}", path.display()))?;
    Ok(listener)
}

/// A TLS config presenting the Web PKI certificate in `files`, kept current as they are
/// renewed. A certificate that does not load fails here, before the server reports ready.
fn web_tls(
    files: &ServingCertFiles,
    supervisor: &Supervisor,
) -> anyhow::Result<rustls::ServerConfig> {
    let cert = ServingCert::load(&files.cert_file_path, &files.key_file_path)?;
    let (reloaded, interval) = (cert.clone(), files.file_sync_interval);
    // Restarted: it only re-reads the files; the certificate in use stays meanwhile.
    supervisor.restart("serving_cert_reload", Backoff::DEFAULT, move || {
        reloaded
            .clone()
            .keep_current(interval, common_process::shutdown_signal())
    });
    Ok(cert.tls_config()?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::bind_admin_socket;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn the_admin_socket_is_private_from_the_start_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("private").join("api.sock");
        for _ in 0..2 {
            // The second round finds the first round's socket: a stale file to replace.
            let listener = bind_admin_socket(&socket).expect("bind");
            assert_eq!(mode(&socket), 0o600);
            assert_eq!(mode(socket.parent().expect("parent")), 0o700);
            let accepted = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
            tokio::net::UnixStream::connect(&socket)
                .await
                .expect("the socket accepts at its final path");
            accepted.await.expect("join").expect("accept");
        }
        let leftovers: Vec<_> = std::fs::read_dir(socket.parent().expect("parent"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["api.sock"],
            "no staging directory is left behind"
        );
    }
}
