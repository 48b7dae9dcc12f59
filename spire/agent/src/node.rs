//! The agent's own identity: attesting the node to the server, keeping the agent SVID on disk
//! so a restart needs no new join token, and the mTLS link to the server's agent API.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use identity::clock::Clock;
use identity::failure::HandshakeFailure;
use identity::svid_tls::{self, SvidStore};
use spiffe::{SpiffeId, TrustDomain};
use spire_proto::bundle_format;
use spire_proto::refusal::{self, Reason};
use spire_proto::server as pb;
use spire_proto::server::agent_client::AgentClient;
use spire_proto::x509pop;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::svid::{new_key_and_csr, validity};

/// Why the agent could not establish its identity.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored agent data in {dir} is unusable: {message}")]
    Corrupt { dir: PathBuf, message: String },
    #[error("trust bundle: {0}")]
    Bundle(String),
    #[error(
        "no stored agent SVID in {0} and no join token: start the agent with -joinToken (from `spire-server token generate`)"
    )]
    NeedJoinToken(PathBuf),
    #[error(
        "the agent SVID stored in {dir} expired at {expired_at}: the agent needs a new join token (-joinToken)"
    )]
    Expired { dir: PathBuf, expired_at: i64 },
    #[error("node attestation failed: {0}")]
    Attestation(String),
    #[error("the server refused this agent: {0}")]
    Refused(String),
    /// The server no longer accepts this agent's SVID: the agent was evicted, or the SVID was
    /// superseded or has expired. Only a new attestation helps.
    #[error("the server no longer accepts this agent's SVID: {0}")]
    NotAttested(String),
    /// The server banned this agent: it may not attest again.
    #[error("the server banned this agent: {0}")]
    Banned(String),
    #[error("cannot reach the server at {addr}: {message}")]
    Unreachable {
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("{0}")]
    Identity(#[from] identity::IdentityError),
    #[error("key generation: {0}")]
    Key(#[from] rcgen::Error),
}

/// The agent's SVID.
pub struct AgentSvid {
    pub id: SpiffeId,
    pub chain: Vec<Vec<u8>>,
    pub key: Zeroizing<Vec<u8>>,
    pub not_before: i64,
    pub not_after: i64,
}

impl std::fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSvid")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl AgentSvid {
    fn from_proto(svid: Option<pb::X509Svid>, key: Zeroizing<Vec<u8>>) -> Result<Self, NodeError> {
        let svid = svid.ok_or_else(|| NodeError::Attestation("server returned no SVID".into()))?;
        let id =
            SpiffeId::new(&svid.spiffe_id).map_err(|e| NodeError::Attestation(e.to_string()))?;
        let (not_before, not_after) = svid
            .cert_chain
            .first()
            .and_then(|leaf| validity(leaf))
            .ok_or_else(|| NodeError::Attestation("server returned an unparsable SVID".into()))?;
        Ok(AgentSvid {
            id,
            chain: svid.cert_chain,
            key,
            not_before,
            not_after,
        })
    }
}

/// The agent's data directory: `agent-svid.pem`, `agent-key.pem` (0600) and `bundle.pem`.
pub struct DataDir {
    dir: PathBuf,
}

impl DataDir {
    /// Opens (creating, mode 0700) the data directory.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| NodeError::Io {
                path: dir.to_owned(),
                source,
            })?;
        Ok(DataDir {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>, NodeError> {
        match std::fs::read(self.path(name)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NodeError::Io {
                path: self.path(name),
                source,
            }),
        }
    }

    /// The stored bundle, if any.
    pub fn load_bundle(&self) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
        let Some(data) = self.read_optional("bundle.pem")? else {
            return Ok(None);
        };
        bundle_format::parse_x509_authorities(&data)
            .map(Some)
            .map_err(|e| NodeError::Corrupt {
                dir: self.dir.clone(),
                message: e.to_string(),
            })
    }

    /// The stored agent SVID, if any (expired or not).
    pub fn load_svid(&self) -> Result<Option<AgentSvid>, NodeError> {
        let (Some(certs), Some(key)) = (
            self.read_optional("agent-svid.pem")?,
            self.read_optional("agent-key.pem")?,
        ) else {
            return Ok(None);
        };
        let corrupt = |message: String| NodeError::Corrupt {
            dir: self.dir.clone(),
            message,
        };
        let chain: Vec<Vec<u8>> = pem::parse_many(&certs)
            .map_err(|e| corrupt(format!("agent-svid.pem: {e}")))?
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect();
        let key = Zeroizing::new(
            pem::parse(&key)
                .map_err(|e| corrupt(format!("agent-key.pem: {e}")))?
                .into_contents(),
        );
        let leaf = chain
            .first()
            .ok_or_else(|| corrupt("agent-svid.pem holds no certificate".into()))?;
        let id = identity::peer::spiffe_id_from_cert(leaf).map_err(|e| corrupt(e.to_string()))?;
        let (not_before, not_after) =
            validity(leaf).ok_or_else(|| corrupt("unparsable agent SVID".into()))?;
        Ok(Some(AgentSvid {
            id,
            chain,
            key,
            not_before,
            not_after,
        }))
    }

    /// Saves the agent SVID and key (key file 0600), each atomically.
    pub fn save_svid(&self, svid: &AgentSvid) -> Result<(), NodeError> {
        let certs: String = svid
            .chain
            .iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
            .collect();
        let key = Zeroizing::new(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            svid.key.to_vec(),
        )));
        self.write_atomic("agent-key.pem", key.as_bytes(), 0o600)?;
        self.write_atomic("agent-svid.pem", certs.as_bytes(), 0o644)
    }

    /// Removes the stored agent SVID and key, so that a restart cannot present an SVID the
    /// server no longer accepts and attests afresh instead (SPIRE's agent does the same when
    /// it must re-attest). Missing files are not an error.
    pub fn delete_svid(&self) -> Result<(), NodeError> {
        for name in ["agent-svid.pem", "agent-key.pem"] {
            match std::fs::remove_file(self.path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(NodeError::Io {
                        path: self.path(name),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Saves the trust bundle atomically.
    pub fn save_bundle(&self, bundle: &[Vec<u8>]) -> Result<(), NodeError> {
        let pem: String = bundle
            .iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
            .collect();
        self.write_atomic("bundle.pem", pem.as_bytes(), 0o644)
    }

    fn write_atomic(&self, name: &str, data: &[u8], mode: u32) -> Result<(), NodeError> {
        let path = self.path(name);
        common_process::files::write_atomic(&path, data, mode)
            .map_err(|source| NodeError::Io { path, source })
    }
}

/// The mTLS link to the server's agent API. The client presents whatever SVID the store holds;
/// the server must present `spiffe://<td>/spire/server` verified against the store's bundle.
/// Clones share the store, so every clone presents the current agent SVID.
#[derive(Clone)]
pub struct ServerLink {
    addr: std::net::SocketAddr,
    pub store: Arc<SvidStore>,
    tls: Arc<rustls::ClientConfig>,
    /// What the agent judges SVID and token lifetimes by.
    pub clock: Clock,
}

impl ServerLink {
    pub fn new(
        addr: std::net::SocketAddr,
        td: &TrustDomain,
        bundle: &[Vec<u8>],
    ) -> Result<Self, NodeError> {
        let store = Arc::new(SvidStore::new(bundle)?);
        let server_id = SpiffeId::new(format!("spiffe://{td}/spire/server"))
            .map_err(|e| NodeError::Bundle(e.to_string()))?;
        let tls = Arc::new(svid_tls::client_config(
            store.clone(),
            svid_tls::exactly(server_id),
        )?);
        Ok(ServerLink {
            addr,
            store,
            tls,
            clock: Clock::system(),
        })
    }

    /// A client on a fresh connection, so the TLS handshake presents the store's current SVID.
    pub fn client(&self) -> AgentClient<Channel> {
        AgentClient::new(identity::dial::grpc_channel(self.addr, self.tls.clone()))
    }

    /// Describes a failed call, pointing at the likely cause. A refusal that says why (see
    /// [`refusal`]) becomes [`NodeError::NotAttested`] or [`NodeError::Banned`], which the
    /// agent acts on; anything else that is not a refusal counts as the server being
    /// unreachable, which only delays the next sync.
    pub fn error(&self, status: tonic::Status) -> NodeError {
        match refusal::reason(&status) {
            Some(Reason::AgentBanned) => return NodeError::Banned(status.message().into()),
            Some(reason) if refusal::should_reattest(reason) => {
                return NodeError::NotAttested(status.message().into());
            }
            _ => {}
        }
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                NodeError::Refused(status.message().into())
            }
            tonic::Code::InvalidArgument => NodeError::Attestation(status.message().into()),
            _ => {
                let source = std::error::Error::source(&status)
                    .map(|s| format!(": {s:?}"))
                    .unwrap_or_default();
                let mut message = format!("{}{source}", status.message());
                let tls = HandshakeFailure::find(&status);
                if tls.is_some_and(HandshakeFailure::is_untrusted_chain) {
                    message.push_str(
                        " (the server's certificate does not verify against the trust bundle: is -trustBundle this trust domain's bundle?)",
                    );
                }
                NodeError::Unreachable {
                    addr: self.addr,
                    message,
                }
            }
        }
    }

    /// Attests with a join token; returns the agent SVID and the trust bundle.
    pub async fn attest_join_token(
        &self,
        token: &str,
    ) -> Result<(AgentSvid, Vec<Vec<u8>>), NodeError> {
        let (csr, key) = new_key_and_csr()?;
        let request = pb::AttestAgentRequest {
            attestation_type: "join_token".into(),
            payload: token.as_bytes().to_vec(),
            csr,
        };
        let response = self
            .client()
            .attest_agent(request)
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        let svid = AgentSvid::from_proto(response.svid, key)?;
        let bundle = response
            .bundle
            .map(|b| b.x509_authorities)
            .unwrap_or_default();
        Ok((svid, bundle))
    }

    /// Attests with x509pop: shows the node certificate chain, answers the server's
    /// challenge with its key; returns the agent SVID and the trust bundle.
    pub async fn attest_x509pop(
        &self,
        files: &crate::config::X509PopFiles,
    ) -> Result<(AgentSvid, Vec<Vec<u8>>), NodeError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| NodeError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let chain = pem::parse_many(read(&files.certificate_path)?)
            .map_err(|e| NodeError::Attestation(format!("x509pop certificate: {e}")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect::<Vec<_>>();
        if chain.is_empty() {
            return Err(NodeError::Attestation(format!(
                "{} holds no CERTIFICATE",
                files.certificate_path.display()
            )));
        }
        let key_pem = Zeroizing::new(read(&files.private_key_path)?);
        let key = pem::parse(&*key_pem)
            .map_err(|e| NodeError::Attestation(format!("x509pop private key: {e}")))?;
        let key = Zeroizing::new(key.into_contents());
        let evidence = serde_json::to_vec(&x509pop::Evidence::new(&chain))
            .map_err(|e| NodeError::Attestation(e.to_string()))?;
        let mut client = self.client();
        let challenge = client
            .attest_challenge(pb::AttestChallengeRequest {
                attestation_type: x509pop::ATTESTATION_TYPE.into(),
                payload: evidence,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        let answer = x509pop::answer(&challenge.challenge_id, &challenge.challenge, &key)
            .map_err(|e| NodeError::Attestation(e.0))?;
        let (csr, svid_key) = new_key_and_csr()?;
        let response = client
            .attest_agent(pb::AttestAgentRequest {
                attestation_type: x509pop::ATTESTATION_TYPE.into(),
                payload: answer,
                csr,
            })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        let svid = AgentSvid::from_proto(response.svid, svid_key)?;
        let bundle = response
            .bundle
            .map(|b| b.x509_authorities)
            .unwrap_or_default();
        Ok((svid, bundle))
    }

    /// Renews the agent SVID with a new key.
    pub async fn renew(&self) -> Result<AgentSvid, NodeError> {
        let (csr, key) = new_key_and_csr()?;
        let response = self
            .client()
            .renew_agent(pb::RenewAgentRequest { csr })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        AgentSvid::from_proto(response.svid, key)
    }
}

/// Establishes the agent's identity at start: the stored SVID if it is still valid, otherwise
/// a join token attestation. Returns the link (holding the SVID) and the SVID.
pub async fn establish(
    config: &crate::config::AgentConfig,
    data: &DataDir,
) -> Result<(ServerLink, AgentSvid), NodeError> {
    let bundle = match data.load_bundle()? {
        Some(bundle) => bundle,
        None => {
            let path = config.trust_bundle.as_ref().ok_or_else(|| {
                NodeError::Bundle(
                    "no bundle stored yet: give -trustBundle (from `spire-server bundle show`)"
                        .into(),
                )
            })?;
            let raw = std::fs::read(path).map_err(|source| NodeError::Io {
                path: path.clone(),
                source,
            })?;
            bundle_format::parse_x509_authorities(&raw)
                .map_err(|e| NodeError::Bundle(format!("{}: {e}", path.display())))?
        }
    };
    let link = ServerLink::new(config.server_addr, &config.trust_domain, &bundle)?;
    let stored = data.load_svid()?;
    let svid = match stored {
        Some(svid) if svid.not_after > link.clock.unix_seconds() => {
            tracing::info!(agent = %svid.id, "using the stored agent SVID");
            svid
        }
        stored => {
            let expired = stored.is_some();
            let (svid, bundle) = match (&config.x509pop, &config.join_token, stored) {
                (Some(files), _, _) => {
                    if expired {
                        tracing::info!("stored agent SVID expired; attesting again with x509pop");
                    }
                    link.attest_x509pop(files).await?
                }
                (None, Some(token), _) => {
                    if expired {
                        tracing::info!("stored agent SVID expired; attesting with the join token");
                    }
                    link.attest_join_token(token.expose()).await?
                }
                (None, None, Some(svid)) => {
                    return Err(NodeError::Expired {
                        dir: config.data_dir.clone(),
                        expired_at: svid.not_after,
                    });
                }
                (None, None, None) => {
                    return Err(NodeError::NeedJoinToken(config.data_dir.clone()));
                }
            };
            if !bundle.is_empty() {
                link.store.set_bundle(&bundle)?;
                data.save_bundle(&bundle)?;
            }
            data.save_svid(&svid)?;
            tracing::info!(agent = %svid.id, "node attested");
            svid
        }
    };
    link.store.set_svid(&svid.chain, &svid.key)?;
    Ok((link, svid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    fn self_signed(uri: &str, ca: bool) -> (Vec<u8>, Zeroizing<Vec<u8>>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("URI"))];
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).expect("certificate");
        (cert.der().to_vec(), Zeroizing::new(key.serialize_der()))
    }

    #[test]
    fn refusals_that_say_why_are_told_apart_from_outages() {
        let (ca, _) = self_signed("spiffe://example.org", true);
        let td = TrustDomain::new("example.org").expect("trust domain");
        let link = ServerLink::new("127.0.0.1:1".parse().expect("addr"), &td, &[ca]).expect("link");
        for reason in [
            Reason::AgentNotAttested,
            Reason::AgentNotActive,
            Reason::AgentExpired,
        ] {
            let e = link.error(refusal::permission_denied(reason, "agent is not attested"));
            assert!(matches!(e, NodeError::NotAttested(_)), "{reason:?}: {e:?}");
        }
        let e = link.error(refusal::permission_denied(Reason::AgentBanned, "banned"));
        assert!(matches!(e, NodeError::Banned(_)), "{e:?}");
        // Without a reason a refusal is not acted on.
        for status in [
            tonic::Status::permission_denied("agent is not attested"),
            tonic::Status::unauthenticated("an agent SVID is required"),
        ] {
            let e = link.error(status);
            assert!(matches!(e, NodeError::Refused(_)), "{e:?}");
        }
        let e = link.error(tonic::Status::unavailable("connection refused"));
        assert!(matches!(e, NodeError::Unreachable { .. }), "{e:?}");
    }

    #[test]
    fn a_deleted_svid_is_gone_and_the_bundle_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::open(&dir.path().join("data")).expect("data dir");
        let (cert, key) = self_signed("spiffe://example.org/spire/agent/join_token/t", false);
        let (ca, _) = self_signed("spiffe://example.org", true);
        let (not_before, not_after) = validity(&cert).expect("validity");
        let svid = AgentSvid {
            id: SpiffeId::new("spiffe://example.org/spire/agent/join_token/t").expect("ID"),
            chain: vec![cert],
            key,
            not_before,
            not_after,
        };
        data.save_svid(&svid).expect("save SVID");
        data.save_bundle(std::slice::from_ref(&ca))
            .expect("save bundle");
        assert!(data.load_svid().expect("load").is_some());

        data.delete_svid().expect("delete");
        assert!(data.load_svid().expect("load").is_none());
        assert!(!dir.path().join("data/agent-key.pem").exists());
        assert_eq!(data.load_bundle().expect("bundle"), Some(vec![ca]));
        data.delete_svid().expect("deleting again is fine");
    }
}
