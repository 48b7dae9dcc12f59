//! Federation: bundles of other trust domains, set by an operator with `bundle set` or fetched
//! from their bundle endpoints ([`keep_fetching`]), and which of them each agent receives
//! (those its entries federate with).
//!
//! Relationships come from the config file and from the datastore (`federation create`, see
//! [`admin`]); [`run_relationships`] keeps one fetch task per trust domain in step with both,
//! the config file winning for a trust domain in both, as SPIRE's static relationships do.

pub mod admin;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use identity::https_client::HttpsClient;
use identity::svid_tls::{self, SvidStore};
use spiffe::TrustDomain;
use spire_proto::bundle_format;
use spire_proto::server as pb;
use tonic::Status;

use crate::config::{EndpointProfile, FederationRelationship};
use crate::datastore::{self, DatastoreError};
use crate::state::{ServerState, bundle_to_proto};

/// Parses `raw` (`other.org` or `spiffe://other.org`) as a trust domain other than ours.
pub fn foreign_trust_domain(state: &ServerState, raw: &str) -> Result<TrustDomain, Status> {
    let td = spire_proto::flags::canonical_trust_domain(raw)
        .map_err(|e| Status::invalid_argument(format!("invalid trust domain {raw:?}: {e}")))?;
    if td == state.config.trust_domain {
        return Err(Status::invalid_argument(format!(
            "{td} is this server's own trust domain; its bundle is managed by the server"
        )));
    }
    Ok(td)
}

/// Checks a federated bundle from the admin API and converts it to its stored form.
pub fn checked_bundle(td: &TrustDomain, bundle: pb::Bundle) -> Result<datastore::Bundle, Status> {
    if bundle.x509_authorities.is_empty() {
        return Err(Status::invalid_argument(
            "the bundle has no X.509 authority; a federated bundle must hold at least one CA",
        ));
    }
    for der in &bundle.x509_authorities {
        use x509_parser::prelude::{FromDer, X509Certificate};
        X509Certificate::from_der(der).map_err(|e| {
            Status::invalid_argument(format!("the bundle holds an unparsable certificate: {e}"))
        })?;
    }
    for key in &bundle.jwt_authorities {
        if key.key_id.is_empty() {
            return Err(Status::invalid_argument("a JWT authority has no key ID"));
        }
    }
    Ok(datastore::Bundle {
        trust_domain: td.to_string(),
        x509_authorities: bundle.x509_authorities,
        jwt_authorities: bundle
            .jwt_authorities
            .into_iter()
            .map(|k| datastore::JwtKey {
                key_id: k.key_id,
                public_key: k.public_key,
                expires_at: k.expires_at,
            })
            .collect(),
        sequence_number: 0,
        refresh_hint: bundle.refresh_hint,
    })
}

/// The stored bundles of other trust domains.
pub async fn list(state: &ServerState) -> Result<Vec<datastore::Bundle>, DatastoreError> {
    let own = state.config.trust_domain.to_string();
    let mut bundles = state.datastore.list_bundles().await?;
    bundles.retain(|b| b.trust_domain != own);
    Ok(bundles)
}

/// The federated bundles for `entries`: those of every trust domain one of them federates
/// with and that has a stored bundle, ordered by trust domain.
pub async fn bundles_for(
    state: &ServerState,
    entries: &[datastore::Entry],
) -> Result<Vec<pb::Bundle>, DatastoreError> {
    let wanted: BTreeSet<String> = entries
        .iter()
        .flat_map(|e| e.federates_with.iter())
        .filter_map(|td| TrustDomain::new(td).ok())
        .map(|td| td.to_string())
        .collect();
    if wanted.is_empty() {
        return Ok(vec![]);
    }
    Ok(list(state)
        .await?
        .iter()
        .filter(|b| wanted.contains(&b.trust_domain))
        .map(bundle_to_proto)
        .collect())
}

/// Shortest wait between two fetches of a bundle endpoint, whatever its refresh hint says.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Longest wait between two fetches.
const MAX_REFRESH: Duration = Duration::from_secs(300);
/// The wait after a failed fetch.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Keeps the bundle of `relationship`'s trust domain current by fetching it from its bundle
/// endpoint at the refresh hint the bundle carries, until the relationship ends.
///
/// `https_spiffe`: the endpoint's certificate is verified against the latest stored bundle of
/// that trust domain, which an operator bootstraps once (`bundle set`, or the bundle given to
/// `federation create`; Federation §5.2.2). `https_web`: against the Web PKI roots. A fetch
/// that fails is retried after [`RETRY_AFTER`] and leaves the stored bundle as it was.
///
/// Before each fetch the relationship is looked up again, and the task ends if it was deleted
/// or changed: once `federation delete` has returned, no new request goes to the endpoint
/// (on this server, or on another sharing the datastore), whenever the supervisor notices.
pub async fn keep_fetching(state: Arc<ServerState>, relationship: FederationRelationship) {
    let td = relationship.trust_domain.clone();
    loop {
        match relationships(&state).await {
            Ok(current) if !current.contains(&relationship) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(trust_domain = %td, error = %e, "cannot read the federation relationships");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        let wait = match fetch_once(&state, &relationship).await {
            Ok(hint) => hint.clamp(MIN_REFRESH, MAX_REFRESH),
            Err(e) => {
                tracing::warn!(trust_domain = %td, error = %e, "fetching the federated bundle failed");
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One fetch: stores the bundle if it changed and returns its refresh hint.
pub(crate) async fn fetch_once(
    state: &ServerState,
    relationship: &FederationRelationship,
) -> Result<Duration, String> {
    let td = relationship.trust_domain.to_string();
    let stored = state
        .datastore
        .get_bundle(&td)
        .await
        .map_err(|e| e.to_string())?;
    let tls = match &relationship.profile {
        EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            let stored = stored.as_ref().ok_or_else(|| {
                format!(
                    "no bundle of {td} is stored to verify its endpoint with; bootstrap it with \
                     `spire-server bundle set -id spiffe://{td}`"
                )
            })?;
            let store =
                Arc::new(SvidStore::new(&stored.x509_authorities).map_err(|e| e.to_string())?);
            let mut tls =
                svid_tls::client_config(store, svid_tls::exactly(endpoint_spiffe_id.clone()))
                    .map_err(|e| e.to_string())?;
            // hyper-rustls negotiates ALPN itself and refuses a config that already names
            // protocols.
            tls.alpn_protocols.clear();
            tls
        }
        EndpointProfile::HttpsWeb => web_pki_config()?,
    };
    let client = HttpsClient::new(tls, Duration::from_secs(10));
    let uri = HttpsClient::parse_url(&relationship.url).map_err(|e| e.to_string())?;
    let (status, body) = client.get(uri).await.map_err(|e| e.to_string())?;
    if status != hyper::StatusCode::OK {
        return Err(format!("the endpoint answered {status}"));
    }
    let fetched = bundle_format::parse_bundle(&td, &body).map_err(|e| e.to_string())?;
    let hint = u64::try_from(fetched.refresh_hint)
        .ok()
        .filter(|h| *h > 0)
        .map_or(MAX_REFRESH, Duration::from_secs);
    let fetched =
        checked_bundle(&relationship.trust_domain, fetched).map_err(|e| e.message().to_owned())?;
    let changed = stored.is_none_or(|stored| {
        fetched.x509_authorities != stored.x509_authorities
            || fetched.jwt_authorities != stored.jwt_authorities
    });
    if changed {
        let written = state
            .datastore
            .set_bundle(&fetched)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            trust_domain = %td,
            sequence = written.sequence_number,
            "federated bundle updated from its endpoint"
        );
    }
    Ok(hint)
}

/// A client config for `https_web`: the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// are honoured) and the usual host name check, no client certificate.
fn web_pki_config() -> Result<rustls::ClientConfig, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no system root certificates to verify an https_web endpoint with ({:?})",
            found.errors
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// How often the set of relationships is compared with the running fetch tasks.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// The relationships in force: the config file's, then the datastore's for other trust
/// domains (an unusable stored one is logged and skipped).
pub(crate) async fn relationships(
    state: &ServerState,
) -> Result<Vec<FederationRelationship>, DatastoreError> {
    let mut all = state.config.federates_with.clone();
    for stored in state.datastore.list_relationships().await? {
        if all
            .iter()
            .any(|r| r.trust_domain.as_str() == stored.trust_domain)
        {
            continue;
        }
        match admin::from_stored(state, &stored) {
            Ok(rel) => all.push(rel),
            Err(e) => {
                tracing::warn!(trust_domain = %stored.trust_domain, error = %e, "ignoring an unusable federation relationship")
            }
        }
    }
    Ok(all)
}

/// Keeps one [`keep_fetching`] task per relationship in force until the process ends:
/// starts tasks for new relationships, restarts those whose relationship changed (or whose
/// task ended, having seen the change first), stops those whose relationship was deleted.
pub async fn run_relationships(state: Arc<ServerState>, supervisor: common_process::Supervisor) {
    let mut running: HashMap<TrustDomain, (FederationRelationship, Fetching)> = HashMap::new();
    loop {
        match relationships(&state).await {
            Ok(wanted) => {
                running.retain(|td, (rel, task)| {
                    let keep = wanted.contains(rel) && !task.0.is_finished();
                    if !keep {
                        tracing::info!(trust_domain = %td, "federation relationship ended or changed");
                    }
                    keep
                });
                for rel in wanted {
                    if !running.contains_key(&rel.trust_domain) {
                        let (state, fetched) = (state.clone(), rel.clone());
                        // Restarted: a fetch loop keeps nothing but the relationship, which
                        // it reads again; its bundle stays stored meanwhile.
                        let task = supervisor.restart(
                            "federation_fetch",
                            common_process::Backoff::DEFAULT,
                            move || keep_fetching(state.clone(), fetched.clone()),
                        );
                        running.insert(rel.trust_domain.clone(), (rel, Fetching(task)));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the federation relationships"),
        }
        tokio::time::sleep(RECONCILE_EVERY).await;
    }
}

/// A relationship's fetch task, stopped when dropped: when its relationship ends, and when
/// [`run_relationships`] itself stops (a restart of it starts every fetch task anew).
struct Fetching(tokio::task::AbortHandle);

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.abort();
    }
}
