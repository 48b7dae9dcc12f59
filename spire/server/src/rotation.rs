//! Keeps what the server signs with and presents up to date while it runs: rotates the CA and
//! JWT key on schedule ([`crate::ca::Authorities::rotate`]), publishes them in the trust bundle
//! before they are used, prunes expired ones, keeps the server's TLS trust store in step with
//! the stored bundle (which also carries the CAs of other servers sharing the datastore), and
//! renews the server's own SVID at half its life and whenever a new CA is activated.

use std::sync::Arc;

use identity::svid_tls::SvidStore;

use crate::ca::Step;
use crate::datastore::{self, DatastoreError};
use crate::state::{ServerState, server_id};

/// The refresh hint of a newly created bundle, seconds.
const DEFAULT_REFRESH_HINT: i64 = 300;

/// Adds this server's current and prepared authorities to the trust domain's bundle if they
/// are not there yet and drops expired ones, keeping those of other servers sharing the
/// datastore. The write is a compare-and-set on the bundle's sequence number, retried on
/// conflict, so two servers publishing at once never drop each other's CA. Returns the bundle
/// as stored.
pub async fn publish_authorities(state: &ServerState) -> Result<datastore::Bundle, DatastoreError> {
    let td = state.config.trust_domain.to_string();
    loop {
        let stored = state.datastore.get_bundle(&td).await?;
        let mut bundle = stored.clone().unwrap_or(datastore::Bundle {
            trust_domain: td.clone(),
            x509_authorities: vec![],
            jwt_authorities: vec![],
            sequence_number: 0,
            refresh_hint: DEFAULT_REFRESH_HINT,
        });
        let now = state.clock.unix_seconds();
        bundle
            .x509_authorities
            .retain(|der| cert_not_after(der).is_some_and(|t| t > now));
        for der in state.x509_authorities() {
            if !bundle.x509_authorities.contains(&der) {
                bundle.x509_authorities.push(der);
            }
        }
        bundle.jwt_authorities.retain(|k| k.expires_at > now);
        for key in state.jwt_keys() {
            if !bundle.jwt_authorities.contains(&key) {
                bundle.jwt_authorities.push(key);
            }
        }
        if let Some(stored) = stored.as_ref()
            && *stored == bundle
        {
            return Ok(bundle);
        }
        let expected = stored.as_ref().map(|b| b.sequence_number);
        if let Some(written) = state.datastore.set_bundle_if(&bundle, expected).await? {
            tracing::info!(
                sequence = written.sequence_number,
                x509_authorities = written.x509_authorities.len(),
                jwt_authorities = written.jwt_authorities.len(),
                "trust bundle published"
            );
            return Ok(written);
        }
        tracing::debug!("the bundle changed while publishing; reading it again");
    }
}

/// A certificate's NotAfter in Unix seconds, if it parses.
fn cert_not_after(der: &[u8]) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Mints a new server SVID into `store`; returns when it should be renewed (half its life).
pub fn refresh_server_svid(state: &ServerState, store: &SvidStore) -> anyhow::Result<i64> {
    let issued = state.clock.unix_seconds();
    let minted = state.ca().mint(
        &server_id(&state.config),
        state.config.default_x509_svid_ttl,
        &[],
    )?;
    store.set_svid(&minted.svid.cert_chain, &minted.private_key_pkcs8)?;
    Ok(issued + (minted.svid.expires_at - issued) / 2)
}

/// Runs the checks every [`crate::ca::Authorities::check_interval`] until the process ends.
/// `renew_at` is when the server SVID in `store` is due. Failures are logged and retried at
/// the next check.
pub async fn run(state: Arc<ServerState>, store: Arc<SvidStore>, mut renew_at: i64) {
    let interval = state.authorities.check_interval();
    let mut published_sequence = None;
    loop {
        tokio::time::sleep(interval).await;
        let rotation = match state.authorities.rotate(state.clock.unix_seconds()) {
            Ok(rotation) => rotation,
            Err(e) => {
                tracing::error!(error = %e, "rotating the signing authorities failed; retrying");
                Default::default()
            }
        };
        match publish_authorities(&state).await {
            Ok(bundle) if published_sequence != Some(bundle.sequence_number) => {
                match store.set_bundle(&bundle.x509_authorities) {
                    Ok(()) => published_sequence = Some(bundle.sequence_number),
                    Err(e) => tracing::error!(error = %e, "the stored bundle is unusable"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "publishing the trust bundle failed; retrying"),
        }
        if rotation.x509 == Step::Activated || state.clock.unix_seconds() >= renew_at {
            match refresh_server_svid(&state, &store) {
                Ok(next) => renew_at = next,
                Err(e) => {
                    tracing::error!(error = %e, "renewing the server SVID failed; retrying");
                    renew_at = state.clock.unix_seconds();
                }
            }
        }
    }
}
