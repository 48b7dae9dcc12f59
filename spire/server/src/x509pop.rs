//! The `x509pop` node attestor, server side: an agent shows a certificate chain that must
//! verify against the CA bundle the operator configured (`[server.node_attestor.x509pop]
//! ca_bundle_path`), then proves possession of the leaf's key by signing a random challenge
//! ([`spire_proto::x509pop`]). The agent ID and selectors are SPIRE's:
//! `spiffe://<td>/spire/agent/x509pop/<SHA-1 of the leaf>`, `x509pop:subject:cn:<CN>`,
//! `x509pop:ca:fingerprint:<SHA-1>` for each intermediate and the anchoring CA, and
//! `x509pop:serialnumber:<hex>`. Such agents may attest again whenever their SVID lapses.
//!
//! Challenges live in memory for [`CHALLENGE_TTL`], single use, at most [`MAX_PENDING`] at
//! once, so a flood of first steps cannot grow the server without bound.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use spiffe::{SpiffeId, TrustDomain};
use spire_proto::x509pop::{self as pop, Answer, Evidence, NONCE_LEN};
use tonic::Status;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::datastore::Selector;

/// How long an agent has to answer a challenge.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most challenges outstanding at once.
pub const MAX_PENDING: usize = 1024;

/// A verified chain waiting for its proof of possession.
struct Pending {
    leaf: Vec<u8>,
    challenge: [u8; NONCE_LEN],
    expires: Instant,
    agent_id: SpiffeId,
    selectors: Vec<Selector>,
}

/// The configured CAs and the outstanding challenges.
pub struct X509PopAttestor {
    verifier: Arc<dyn ClientCertVerifier>,
    roots: Vec<Vec<u8>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl X509PopAttestor {
    /// Loads the CA bundle (PEM) that agents' chains must verify against.
    pub fn load(ca_bundle: &Path) -> anyhow::Result<X509PopAttestor> {
        let text = std::fs::read(ca_bundle).map_err(|e| {
            anyhow::anyhow!("reading the x509pop CA bundle {}: {e}", ca_bundle.display())
        })?;
        let roots = spire_proto::bundle_format::parse_x509_authorities(&text)
            .map_err(|e| anyhow::anyhow!("the x509pop CA bundle {}: {e}", ca_bundle.display()))?;
        let mut store = rustls::RootCertStore::empty();
        for der in &roots {
            store.add(CertificateDer::from(der.clone())).map_err(|e| {
                anyhow::anyhow!("the x509pop CA bundle {}: {e}", ca_bundle.display())
            })?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| anyhow::anyhow!("the x509pop CA bundle {}: {e}", ca_bundle.display()))?;
        Ok(X509PopAttestor {
            verifier,
            roots,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// First step: verifies the chain in `payload` and returns a challenge ID and challenge.
    pub fn challenge(&self, td: &TrustDomain, payload: &[u8]) -> Result<(String, Vec<u8>), Status> {
        let chain = Evidence::parse(payload).map_err(|e| Status::invalid_argument(e.0))?;
        let (leaf, intermediates) = chain
            .split_first()
            .expect("invariant: parse refuses an empty chain");
        let intermediates_der: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        self.verifier
            .verify_client_cert(
                &CertificateDer::from(leaf.as_slice()),
                &intermediates_der,
                UnixTime::now(),
            )
            .map_err(|e| {
                Status::permission_denied(format!(
                    "x509pop: the certificate does not chain to a configured CA: {e}"
                ))
            })?;
        let (agent_id, selectors) = self.identity(td, &chain)?;

        let rng = ring::rand::SystemRandom::new();
        let mut challenge = [0u8; NONCE_LEN];
        let mut id = [0u8; 16];
        rng.fill(&mut challenge)
            .and_then(|()| rng.fill(&mut id))
            .map_err(|_| Status::internal("no randomness"))?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            return Err(Status::resource_exhausted(
                "too many x509pop attestations in progress; retry later",
            ));
        }
        pending.insert(
            id.clone(),
            Pending {
                leaf: leaf.clone(),
                challenge,
                expires: now + CHALLENGE_TTL,
                agent_id,
                selectors,
            },
        );
        Ok((id, challenge.to_vec()))
    }

    /// Second step: checks the answer in `payload`; returns the agent ID and its selectors.
    pub fn complete(&self, payload: &[u8]) -> Result<(SpiffeId, Vec<Selector>), Status> {
        let (id, nonce, signature) =
            Answer::parse(payload).map_err(|e| Status::invalid_argument(e.0))?;
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
            .filter(|p| p.expires > Instant::now())
            .ok_or_else(|| {
                Status::invalid_argument("x509pop: unknown or expired challenge; attest again")
            })?;
        pop::verify(&pending.leaf, &pending.challenge, &nonce, &signature)
            .map_err(|e| Status::permission_denied(format!("x509pop: {e}")))?;
        Ok((pending.agent_id, pending.selectors))
    }

    /// The agent ID and selectors of a verified chain.
    fn identity(
        &self,
        td: &TrustDomain,
        chain: &[Vec<u8>],
    ) -> Result<(SpiffeId, Vec<Selector>), Status> {
        let leaf = parse(&chain[0])?;
        let mut selectors = Vec::new();
        if let Some(cn) = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            selectors.push(Selector::new("x509pop", format!("subject:cn:{cn}")));
        }
        for der in &chain[1..] {
            selectors.push(Selector::new(
                "x509pop",
                format!("ca:fingerprint:{}", pop::fingerprint(der)),
            ));
        }
        // The configured CA that anchors the chain: the one whose subject issued its top.
        let top = parse(chain.last().expect("invariant: non-empty chain"))?;
        for root in &self.roots {
            if parse(root)?.subject() == top.issuer() && root != chain.last().expect("non-empty") {
                selectors.push(Selector::new(
                    "x509pop",
                    format!("ca:fingerprint:{}", pop::fingerprint(root)),
                ));
            }
        }
        selectors.push(Selector::new(
            "x509pop",
            format!(
                "serialnumber:{}",
                leaf.raw_serial_as_string().replace(':', "")
            ),
        ));
        let agent_id = SpiffeId::new(format!(
            "spiffe://{td}/spire/agent/x509pop/{}",
            pop::fingerprint(&chain[0])
        ))
        .map_err(|e| Status::internal(format!("x509pop agent ID: {e}")))?;
        Ok((agent_id, selectors))
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, Status> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| Status::invalid_argument(format!("x509pop: bad certificate: {e}")))
}
