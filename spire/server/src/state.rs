//! What every API handler shares: configuration, datastore, CA and JWT signing key.

use std::sync::Arc;

use spiffe::SpiffeId;
use spire_proto::server as pb;

use crate::ca::{Ca, JwtAuthority};
use crate::config::ServerConfig;
use crate::datastore::{self, Datastore};

/// Shared server state, handed to every service.
pub struct ServerState {
    pub config: ServerConfig,
    pub datastore: Datastore,
    pub ca: Arc<Ca>,
    pub jwt: Arc<JwtAuthority>,
    pub metrics: crate::metrics::ServerMetrics,
}

impl ServerState {
    /// The server's own SPIFFE ID, `spiffe://<td>/spire/server`.
    pub fn server_id(&self) -> SpiffeId {
        server_id(&self.config)
    }

    /// The ID of an agent attested with a join token.
    pub fn join_token_agent_id(&self, token: &str) -> Result<SpiffeId, String> {
        let raw = format!(
            "spiffe://{}/spire/agent/join_token/{token}",
            self.config.trust_domain
        );
        SpiffeId::new(raw).map_err(|e| format!("join token cannot form an agent ID: {e}"))
    }

    /// This server's JWT signing key as the bundle publishes it.
    pub fn jwt_key(&self) -> datastore::JwtKey {
        datastore::JwtKey {
            key_id: self.jwt.key_id().to_owned(),
            public_key: self.jwt.public_key_spki(),
            expires_at: self.jwt.not_after(),
        }
    }

    /// The trust domain's current bundle, as stored.
    pub async fn bundle(&self) -> Result<pb::Bundle, datastore::DatastoreError> {
        let td = self.config.trust_domain.to_string();
        let bundle = self
            .datastore
            .get_bundle(&td)
            .await?
            .unwrap_or(datastore::Bundle {
                trust_domain: td,
                x509_authorities: vec![self.ca.cert_der().to_vec()],
                jwt_authorities: vec![self.jwt_key()],
                sequence_number: 0,
                refresh_hint: 0,
            });
        Ok(bundle_to_proto(&bundle))
    }
}

/// `spiffe://<td>/spire/server`.
pub fn server_id(config: &ServerConfig) -> SpiffeId {
    SpiffeId::new(format!("spiffe://{}/spire/server", config.trust_domain))
        .expect("invariant: a valid trust domain with a fixed path is a valid SPIFFE ID")
}

/// Converts a stored bundle to its wire form.
pub fn bundle_to_proto(bundle: &datastore::Bundle) -> pb::Bundle {
    pb::Bundle {
        trust_domain: bundle.trust_domain.clone(),
        x509_authorities: bundle.x509_authorities.clone(),
        jwt_authorities: bundle
            .jwt_authorities
            .iter()
            .map(|k| pb::JwtKey {
                key_id: k.key_id.clone(),
                public_key: k.public_key.clone(),
                expires_at: k.expires_at,
            })
            .collect(),
        sequence_number: bundle.sequence_number,
        refresh_hint: bundle.refresh_hint,
    }
}

/// Current time in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
