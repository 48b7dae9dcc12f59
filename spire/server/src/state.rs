//! What every API handler shares: configuration, datastore, signing authorities.

use std::sync::Arc;

use identity::clock::Clock;
use spiffe::SpiffeId;
use spire_proto::server as pb;

use crate::ca::{Authorities, Ca, JwtAuthority};
use crate::config::ServerConfig;
use crate::datastore::{self, Datastore};

/// Shared server state, handed to every service.
pub struct ServerState {
    pub config: ServerConfig,
    pub datastore: Datastore,
    pub authorities: Authorities,
    /// The x509pop node attestor, when configured.
    pub x509pop: Option<crate::x509pop::X509PopAttestor>,
    pub metrics: crate::metrics::ServerMetrics,
    /// What entries, tokens, agents and bundles are dated with.
    pub clock: Clock,
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

    /// The CA that signs X509-SVIDs now.
    pub fn ca(&self) -> Arc<Ca> {
        self.authorities.ca()
    }

    /// The key that signs JWT-SVIDs now.
    pub fn jwt(&self) -> Arc<JwtAuthority> {
        self.authorities.jwt()
    }

    /// This server's CA certificates (current and prepared) as the bundle publishes them:
    /// the CAs themselves, or the upstream authority's roots.
    pub fn x509_authorities(&self) -> Vec<Vec<u8>> {
        let mut certs: Vec<Vec<u8>> = Vec::new();
        for der in self
            .authorities
            .x509_authorities()
            .iter()
            .flat_map(|ca| ca.bundle_certs())
        {
            if !certs.contains(&der) {
                certs.push(der);
            }
        }
        certs
    }

    /// This server's JWT keys (current and prepared) as the bundle publishes them.
    pub fn jwt_keys(&self) -> Vec<datastore::JwtKey> {
        self.authorities
            .jwt_authorities()
            .iter()
            .map(|key| datastore::JwtKey {
                key_id: key.key_id().to_owned(),
                public_key: key.public_key_spki(),
                expires_at: key.not_after(),
            })
            .collect()
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
                x509_authorities: self.x509_authorities(),
                jwt_authorities: self.jwt_keys(),
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

/// A server state for unit tests: trust domain `example.org`, a fresh CA and an SQLite
/// datastore, all in a temporary directory that lives as long as the returned guard.
#[cfg(test)]
pub(crate) async fn for_tests() -> (Arc<ServerState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig::from_run_args([
        "-trustDomain".to_owned(),
        "example.org".to_owned(),
        "-dataDir".to_owned(),
        dir.path().join("data").display().to_string(),
    ])
    .expect("config");
    let url = format!("sqlite://{}", dir.path().join("ds.sqlite3").display());
    let datastore = Datastore::connect(&url).await.expect("datastore");
    let authorities =
        Authorities::load_or_create(&config.data_dir, &config.trust_domain, config.ca_ttl)
            .expect("authorities");
    let state = Arc::new(ServerState {
        config,
        datastore,
        authorities,
        x509pop: None,
        metrics: crate::metrics::ServerMetrics::default(),
        clock: Clock::system(),
    });
    (state, dir)
}
