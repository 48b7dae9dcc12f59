//! Static federation: bundles of other trust domains that an operator sets with `bundle set`,
//! and which of them each agent receives (those its entries federate with).

use std::collections::BTreeSet;

use spiffe::TrustDomain;
use spire_proto::server as pb;
use tonic::Status;

use crate::datastore::{self, DatastoreError};
use crate::state::{ServerState, bundle_to_proto};

/// Parses `raw` (`other.org` or `spiffe://other.org`) as a trust domain other than ours.
pub fn foreign_trust_domain(state: &ServerState, raw: &str) -> Result<TrustDomain, Status> {
    let td = TrustDomain::new(raw)
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
