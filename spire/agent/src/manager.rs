//! The agent's cache of workload SVIDs and its sync loop.
//!
//! Every sync interval the manager renews the agent SVID if half its life has passed, fetches
//! the entries this agent is authorised for and the trust bundle, and asks the server to sign
//! a fresh SVID for every entry that is new, changed, or past half its lifetime. The result is
//! published as an immutable [`Snapshot`] on a watch channel; Workload API streams wake on each
//! new snapshot. The snapshot also carries the trust domain's JWT authorities; JWT-SVIDs
//! themselves are signed on demand ([`crate::jwt_svids`]). When the server is unreachable the
//! last snapshot stays in place, so workloads keep getting their (still valid) SVIDs.
//!
//! When the server says it no longer accepts the agent's SVID (the agent was evicted, or its
//! SVID superseded), the manager does what SPIRE's agent does ([`Manager::recover`]): an agent
//! that can attest again (x509pop) does so and carries on; one that cannot (join token)
//! removes its stored SVID and stops, and so does a banned agent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use spiffe::TrustDomain;
use spire_proto::server as pb;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::X509PopFiles;
use crate::node::{DataDir, NodeError, ServerLink};
use crate::svid::{new_key_and_csr, should_renew, validity};

/// One workload SVID held for one registration entry.
pub struct WorkloadSvid {
    pub entry: pb::Entry,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER.
    pub key: Zeroizing<Vec<u8>>,
    pub not_before: i64,
    pub not_after: i64,
}

impl std::fmt::Debug for WorkloadSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadSvid")
            .field("spiffe_id", &self.entry.spiffe_id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Everything the Workload API serves, at one instant.
#[derive(Debug)]
pub struct Snapshot {
    pub trust_domain: TrustDomain,
    /// The trust domain's CA certificates (DER).
    pub bundle: Vec<Vec<u8>>,
    /// The trust domain's JWT authorities (key ID + SubjectPublicKeyInfo DER).
    pub jwt_keys: Vec<pb::JwtKey>,
    /// SVIDs ordered by entry ID (SPIRE's order; the first matching one is the default).
    pub svids: Vec<Arc<WorkloadSvid>>,
    /// Bundles of the trust domains this agent's entries federate with, by trust domain name.
    pub federated: BTreeMap<String, pb::Bundle>,
}

impl Snapshot {
    /// The federated bundles `svids`' entries ask for (`federates_with`), by trust domain.
    pub fn federated_for<'a>(&'a self, svids: &[&Arc<WorkloadSvid>]) -> Vec<&'a pb::Bundle> {
        let wanted: BTreeSet<&str> = svids
            .iter()
            .flat_map(|s| s.entry.federates_with.iter())
            .map(|td| td.strip_prefix("spiffe://").unwrap_or(td))
            .collect();
        wanted
            .into_iter()
            .filter_map(|td| self.federated.get(td))
            .collect()
    }
}

/// Owns the sync loop and the sending side of the snapshot channel.
pub struct Manager {
    link: ServerLink,
    data: DataDir,
    agent: crate::node::AgentSvid,
    sync_interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    /// How to attest again when the server stops accepting the agent SVID; `None` when the
    /// attestation method cannot be repeated (a join token is single-use).
    reattest: Option<X509PopFiles>,
}

impl Manager {
    /// A manager with an empty cache. `reattest` is the node attestation to repeat if the
    /// server stops accepting the agent SVID (x509pop), or `None` (join token).
    pub fn new(
        link: ServerLink,
        data: DataDir,
        agent: crate::node::AgentSvid,
        trust_domain: TrustDomain,
        sync_interval: Duration,
        reattest: Option<X509PopFiles>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let empty = Snapshot {
            trust_domain,
            bundle: vec![],
            jwt_keys: vec![],
            svids: vec![],
            federated: BTreeMap::new(),
        };
        let (tx, rx) = watch::channel(Arc::new(empty));
        (
            Manager {
                link,
                data,
                agent,
                sync_interval,
                tx,
                reattest,
            },
            rx,
        )
    }

    /// Runs the sync loop until the server refuses this agent for good, and returns that
    /// refusal (see [`Manager::recover`]). Other failures only wait for the next round.
    pub async fn run(mut self) -> NodeError {
        loop {
            tokio::time::sleep(self.sync_interval).await;
            if let Err(e) = self.sync().await
                && let Err(fatal) = self.recover(e).await
            {
                return fatal;
            }
        }
    }

    /// Acts on a failed sync as SPIRE's agent does; `Err` means the agent must stop.
    ///
    /// - The server no longer accepts the agent SVID ([`NodeError::NotAttested`]): an agent
    ///   that can attest again (x509pop) does so; one that cannot (join token) removes its
    ///   stored SVID, so that a restart asks for a new join token instead of presenting it
    ///   again, and stops.
    /// - The agent is banned: it removes its stored SVID and stops.
    /// - Anything else (server down, network, a refusal without a reason): the cached SVIDs
    ///   keep being served and the next round tries again.
    pub async fn recover(&mut self, error: NodeError) -> Result<(), NodeError> {
        match error {
            NodeError::NotAttested(_) => match self.reattest.clone() {
                Some(files) => self.attest_again(&files, error).await,
                None => {
                    tracing::warn!(error = %error, "Agent needs to re-attest; removing SVID and shutting down");
                    self.remove_svid();
                    Err(error)
                }
            },
            NodeError::Banned(_) => {
                tracing::warn!(error = %error, "Agent is banned: removing SVID and shutting down");
                self.remove_svid();
                Err(error)
            }
            NodeError::Refused(_) => {
                tracing::error!(error = %error, "the server refuses this agent; serving cached SVIDs");
                Ok(())
            }
            _ => {
                tracing::warn!(error = %error, "sync with the server failed; serving cached SVIDs");
                Ok(())
            }
        }
    }

    /// Attests again with x509pop after the server stopped accepting the agent SVID. If the
    /// server cannot be reached the cache stays in service and the next round retries; if it
    /// refuses the attestation, the agent stops.
    async fn attest_again(
        &mut self,
        files: &X509PopFiles,
        cause: NodeError,
    ) -> Result<(), NodeError> {
        tracing::warn!(error = %cause, "the server no longer accepts this agent's SVID; attesting again with x509pop");
        let (svid, bundle) = match self.link.attest_x509pop(files).await {
            Ok(attested) => attested,
            Err(e @ NodeError::Unreachable { .. }) => {
                tracing::warn!(error = %e, "attesting again failed; serving cached SVIDs");
                return Ok(());
            }
            Err(e @ NodeError::Banned(_)) => {
                tracing::warn!(error = %e, "Agent is banned: removing SVID and shutting down");
                self.remove_svid();
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Agent cannot re-attest; removing SVID and shutting down");
                self.remove_svid();
                return Err(e);
            }
        };
        if !bundle.is_empty() {
            self.link.store.set_bundle(&bundle)?;
            self.data.save_bundle(&bundle)?;
        }
        self.data.save_svid(&svid)?;
        self.link.store.set_svid(&svid.chain, &svid.key)?;
        tracing::info!(agent = %svid.id, "node attested again");
        self.agent = svid;
        Ok(())
    }

    /// Removes the stored agent SVID; a failure is logged, as the agent stops either way.
    fn remove_svid(&self) {
        if let Err(e) = self.data.delete_svid() {
            tracing::error!(error = %e, "cannot remove the stored agent SVID");
        }
    }

    /// One round: renew the agent SVID if due, sync entries and bundle, sign what is missing.
    pub async fn sync(&mut self) -> Result<(), NodeError> {
        let now = self.link.clock.unix_seconds();
        if should_renew(self.agent.not_before, self.agent.not_after, now) {
            let renewed = self.link.renew().await?;
            self.data.save_svid(&renewed)?;
            self.link.store.set_svid(&renewed.chain, &renewed.key)?;
            tracing::info!(expires_at = renewed.not_after, "agent SVID renewed");
            self.agent = renewed;
        }
        let mut client = self.link.client();
        let response = client
            .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {})
            .await
            .map_err(|s| self.link.error(s))?
            .into_inner();
        let current = self.tx.borrow().clone();
        let (bundle, jwt_keys) = match response.bundle {
            Some(b) => (b.x509_authorities, b.jwt_authorities),
            None => (vec![], current.jwt_keys.clone()),
        };
        let bundle = if bundle.is_empty() {
            current.bundle.clone()
        } else {
            bundle
        };
        if bundle != current.bundle {
            self.link.store.set_bundle(&bundle)?;
            self.data.save_bundle(&bundle)?;
        }

        let held: HashMap<&str, &Arc<WorkloadSvid>> = current
            .svids
            .iter()
            .map(|s| (s.entry.id.as_str(), s))
            .collect();
        let now = self.link.clock.unix_seconds();
        let mut keep = Vec::new();
        let mut wanted = Vec::new();
        for entry in response.entries {
            match held.get(entry.id.as_str()) {
                Some(svid)
                    if svid.entry == entry
                        && !should_renew(svid.not_before, svid.not_after, now) =>
                {
                    keep.push(Arc::clone(svid));
                }
                _ => wanted.push(entry),
            }
        }
        let signed = self.sign(&mut client, wanted, &held).await?;
        let federated: BTreeMap<String, pb::Bundle> = response
            .federated_bundles
            .into_iter()
            .map(|b| (b.trust_domain.clone(), b))
            .collect();
        let changed = !signed.is_empty()
            || keep.len() != current.svids.len()
            || bundle != current.bundle
            || jwt_keys != current.jwt_keys
            || federated != current.federated;
        if changed {
            let mut svids: Vec<_> = keep.into_iter().chain(signed).collect();
            svids.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
            let snapshot = Snapshot {
                trust_domain: current.trust_domain.clone(),
                bundle,
                jwt_keys,
                svids,
                federated,
            };
            tracing::debug!(svids = snapshot.svids.len(), "cache updated");
            self.tx.send_replace(Arc::new(snapshot));
        }
        Ok(())
    }

    /// Signs SVIDs for `entries` in batches; an entry the server refuses keeps its old SVID
    /// (if any) until it expires.
    async fn sign(
        &self,
        client: &mut spire_proto::server::agent_client::AgentClient<tonic::transport::Channel>,
        entries: Vec<pb::Entry>,
        held: &HashMap<&str, &Arc<WorkloadSvid>>,
    ) -> Result<Vec<Arc<WorkloadSvid>>, NodeError> {
        let mut out = Vec::new();
        for batch in entries.chunks(100) {
            let mut keys = HashMap::new();
            let mut params = Vec::new();
            for entry in batch {
                let (csr, key) = new_key_and_csr()?;
                keys.insert(entry.id.clone(), key);
                params.push(pb::NewX509SvidParams {
                    entry_id: entry.id.clone(),
                    csr,
                });
            }
            let response = client
                .batch_new_x509svid(pb::BatchNewX509SvidRequest { params })
                .await
                .map_err(|s| self.link.error(s))?
                .into_inner();
            let by_id: HashMap<&str, &pb::Entry> =
                batch.iter().map(|e| (e.id.as_str(), e)).collect();
            for result in response.results {
                let (Some(entry), Some(svid), Some(key)) = (
                    by_id.get(result.entry_id.as_str()),
                    result.svid,
                    keys.remove(&result.entry_id),
                ) else {
                    tracing::warn!(entry_id = %result.entry_id, error = %result.error, "server did not sign");
                    if let Some(old) = held.get(result.entry_id.as_str()) {
                        out.push(Arc::clone(old));
                    }
                    continue;
                };
                let Some((not_before, not_after)) =
                    svid.cert_chain.first().and_then(|c| validity(c))
                else {
                    tracing::warn!(entry_id = %result.entry_id, "server returned an unparsable SVID");
                    continue;
                };
                out.push(Arc::new(WorkloadSvid {
                    entry: (*entry).clone(),
                    chain: svid.cert_chain,
                    key,
                    not_before,
                    not_after,
                }));
            }
        }
        Ok(out)
    }
}
