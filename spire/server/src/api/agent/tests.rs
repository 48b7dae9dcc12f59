//! Which agent SVIDs the agent API accepts: only the current one, or the one a renewal just
//! issued (whose first use retires the previous one), never a superseded one, and nothing from
//! an evicted or banned agent. The peer identity is injected as the TLS listener would, and
//! each call passes the authoriser as it does when served.

use std::sync::Arc;
use std::time::Duration;

use identity::listener::PeerInfo;
use spiffe::SpiffeId;
use spire_proto::refusal::{self, Reason};
use spire_proto::server as pb;
use spire_proto::server::agent_server::Agent;
use tonic::{Code, Request};

use super::AgentService;
use crate::api::authz;
use crate::ca::new_csr;
use crate::datastore::JoinToken;
use crate::state::ServerState;

struct Fixture {
    service: AgentService,
    state: Arc<ServerState>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let (state, dir) = crate::state::for_tests().await;
    Fixture {
        service: AgentService::new(state.clone()),
        state,
        _dir: dir,
    }
}

/// An agent SVID as the caller presents it: its ID and its leaf's serial number.
#[derive(Clone, Debug)]
struct Svid {
    id: SpiffeId,
    serial: String,
}

fn svid_of(svid: Option<pb::X509Svid>) -> Svid {
    let svid = svid.expect("an SVID");
    let leaf = svid.cert_chain.first().expect("a leaf");
    Svid {
        id: SpiffeId::new(&svid.spiffe_id).expect("SPIFFE ID"),
        serial: identity::peer::serial_number_from_cert(leaf).expect("serial"),
    }
}

impl Fixture {
    /// A call to `method` from `caller`, through the authoriser as the served API would.
    async fn authorized<T>(
        &self,
        method: &str,
        message: T,
        caller: Option<&Svid>,
    ) -> Result<Request<T>, tonic::Status> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(PeerInfo {
            spiffe_id: caller.map(|c| c.id.clone()),
            serial_number: caller.map(|c| c.serial.clone()),
            remote_addr: "127.0.0.1:1".parse().expect("address"),
        });
        let path = format!("/{}/{method}", authz::AGENT);
        authz::authorize(&self.state, &path, request.extensions_mut()).await?;
        Ok(request)
    }
}

impl Fixture {
    async fn attest_join_token(&self, token: &str) -> Svid {
        self.state
            .datastore
            .create_join_token(&JoinToken {
                token: token.into(),
                expires_at: self.state.clock.unix_seconds() + 600,
            })
            .await
            .expect("token");
        let (csr, _key) = new_csr(None).expect("CSR");
        let response = self
            .service
            .attest_agent(Request::new(pb::AttestAgentRequest {
                attestation_type: "join_token".into(),
                payload: token.as_bytes().to_vec(),
                csr,
            }))
            .await
            .expect("attestation")
            .into_inner();
        svid_of(response.svid)
    }

    async fn renew(&self, caller: &Svid) -> Result<Svid, tonic::Status> {
        let (csr, _key) = new_csr(None).expect("CSR");
        let request = self
            .authorized("RenewAgent", pb::RenewAgentRequest { csr }, Some(caller))
            .await?;
        let response = self.service.renew_agent(request).await?;
        Ok(svid_of(response.into_inner().svid))
    }

    async fn sync(&self, caller: Option<&Svid>) -> Result<(), tonic::Status> {
        let request = self
            .authorized(
                "SyncAuthorizedEntries",
                pb::SyncAuthorizedEntriesRequest {},
                caller,
            )
            .await?;
        self.service
            .sync_authorized_entries(request)
            .await
            .map(|_| ())
    }

    /// (current serial, pending serial) on record.
    async fn serials(&self, id: &SpiffeId) -> (String, String) {
        let agent = self
            .state
            .datastore
            .get_attested_agent(&id.to_string())
            .await
            .expect("datastore")
            .expect("agent on record");
        (agent.serial_number, agent.new_serial_number)
    }
}

fn assert_refused(result: Result<(), tonic::Status>, reason: Reason, text: &str) {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(refusal::reason(&status), Some(reason), "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test]
async fn a_renewed_svid_replaces_the_old_one_at_its_first_use() {
    let f = fixture().await;
    let first = f.attest_join_token("t1").await;
    assert_eq!(
        f.serials(&first.id).await,
        (first.serial.clone(), "".into())
    );
    f.sync(Some(&first)).await.expect("the attested SVID works");

    // Renewal: the new SVID is pending, the old one still works (the answer may be lost).
    let second = f.renew(&first).await.expect("renewal");
    assert_ne!(second.serial, first.serial);
    assert_eq!(
        f.serials(&first.id).await,
        (first.serial.clone(), second.serial.clone())
    );
    f.sync(Some(&first))
        .await
        .expect("old SVID before the switch");

    // The first call with the new SVID makes it current; the old one is refused from then on.
    f.sync(Some(&second)).await.expect("new SVID");
    assert_eq!(
        f.serials(&first.id).await,
        (second.serial.clone(), "".into())
    );
    assert_refused(
        f.sync(Some(&first)).await,
        Reason::AgentNotActive,
        &format!(
            "expected to have serial number \"{}\"; has \"{}\"",
            second.serial, first.serial
        ),
    );
    assert!(
        f.renew(&first).await.is_err(),
        "a superseded SVID cannot renew"
    );
    f.sync(Some(&second)).await.expect("new SVID still works");
}

#[tokio::test]
async fn an_unused_renewal_is_replaced_by_the_next_one() {
    let f = fixture().await;
    let current = f.attest_join_token("t1").await;
    let lost = f.renew(&current).await.expect("renewal");
    let retried = f.renew(&current).await.expect("second renewal");
    assert_refused(
        f.sync(Some(&lost)).await,
        Reason::AgentNotActive,
        "expected to have serial number",
    );
    f.sync(Some(&retried)).await.expect("the latest renewal");
    assert_refused(
        f.sync(Some(&current)).await,
        Reason::AgentNotActive,
        "expected to have serial number",
    );
}

#[tokio::test]
async fn evicted_banned_and_anonymous_callers_are_refused() {
    let f = fixture().await;
    assert_eq!(
        f.sync(None).await.expect_err("no SVID").code(),
        Code::Unauthenticated
    );

    let agent = f.attest_join_token("t1").await;
    let renewed = f.renew(&agent).await.expect("renewal");
    assert!(
        f.state
            .datastore
            .delete_attested_agent(&agent.id.to_string())
            .await
            .expect("evict")
    );
    for svid in [&agent, &renewed] {
        assert_refused(
            f.sync(Some(svid)).await,
            Reason::AgentNotAttested,
            &format!("agent \"{}\" is not attested", agent.id),
        );
    }
    let err = f
        .renew(&agent)
        .await
        .expect_err("evicted agents cannot renew");
    assert_eq!(refusal::reason(&err), Some(Reason::AgentNotAttested));

    let banned = f.attest_join_token("t2").await;
    let mut record = f
        .state
        .datastore
        .get_attested_agent(&banned.id.to_string())
        .await
        .expect("datastore")
        .expect("agent");
    record.banned = true;
    f.state
        .datastore
        .upsert_attested_agent(&record)
        .await
        .expect("ban");
    assert_refused(
        f.sync(Some(&banned)).await,
        Reason::AgentBanned,
        "is banned",
    );
}

#[tokio::test]
async fn concurrent_first_uses_of_a_renewed_svid_all_succeed() {
    let f = Arc::new(fixture().await);
    let agent = f.attest_join_token("t1").await;
    let renewed = f.renew(&agent).await.expect("renewal");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let renewed = renewed.clone();
            tokio::spawn(async move { f.sync(Some(&renewed)).await })
        })
        .collect();
    for call in calls {
        tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("in time")
            .expect("task")
            .expect("every concurrent first use is accepted");
    }
    assert_eq!(f.serials(&agent.id).await, (renewed.serial, "".into()));
}

#[tokio::test]
async fn a_handler_reached_without_the_authoriser_refuses() {
    let f = fixture().await;
    let agent = f.attest_join_token("t1").await;
    // The caller is a good agent, but nothing judged it: no grant, no service.
    let mut request = Request::new(pb::SyncAuthorizedEntriesRequest {});
    request.extensions_mut().insert(PeerInfo {
        spiffe_id: Some(agent.id.clone()),
        serial_number: Some(agent.serial.clone()),
        remote_addr: "127.0.0.1:1".parse().expect("address"),
    });
    let status = f
        .service
        .sync_authorized_entries(request)
        .await
        .expect_err("no grant");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(status.message(), "authorisation fault; see the server log");
}

/// A workload entry `id` under `parent`, expiring at `expires_at` (0: never).
fn workload_entry(
    state: &ServerState,
    id: &str,
    parent: &SpiffeId,
    expires_at: i64,
) -> crate::datastore::Entry {
    crate::datastore::Entry {
        id: id.into(),
        spiffe_id: format!("spiffe://{}/workload/{id}", state.config.trust_domain),
        parent_id: parent.to_string(),
        selectors: vec![crate::datastore::Selector::new("unix", "uid:1000")],
        expires_at,
        ..Default::default()
    }
}

#[tokio::test]
async fn an_agent_gets_svids_only_for_its_own_unexpired_entries() {
    let fixture = fixture().await;
    let (a, b) = (
        fixture.attest_join_token("token-a").await,
        fixture.attest_join_token("token-b").await,
    );
    let state = &fixture.state;
    let past = state.clock.unix_seconds() - 1;
    for entry in [
        workload_entry(state, "mine", &a.id, 0),
        workload_entry(state, "expired", &a.id, past),
        workload_entry(state, "theirs", &b.id, 0),
    ] {
        state.datastore.create_entry(&entry).await.expect("entry");
    }

    let params = ["mine", "expired", "theirs", "missing"].map(|id| pb::NewX509SvidParams {
        entry_id: id.into(),
        csr: new_csr(None).expect("CSR").0,
    });
    let request = fixture
        .authorized(
            "BatchNewX509SVID",
            pb::BatchNewX509SvidRequest {
                params: params.to_vec(),
            },
            Some(&a),
        )
        .await
        .expect("authorised");
    let results = fixture
        .service
        .batch_new_x509svid(request)
        .await
        .expect("answered")
        .into_inner()
        .results;
    let signed: Vec<(&str, Option<&str>)> = results
        .iter()
        .map(|r| {
            (
                r.entry_id.as_str(),
                r.svid.as_ref().map(|s| s.spiffe_id.as_str()),
            )
        })
        .collect();
    let mine = format!("spiffe://{}/workload/mine", state.config.trust_domain);
    assert_eq!(
        signed,
        [
            ("mine", Some(mine.as_str())),
            ("expired", None),
            ("theirs", None),
            ("missing", None)
        ]
    );
    assert!(
        results[2].error.contains("not authorized for this agent"),
        "{:?}",
        results[2]
    );

    for (entry, allowed) in [("mine", true), ("theirs", false), ("expired", false)] {
        let request = fixture
            .authorized(
                "NewJWTSVID",
                pb::NewJwtSvidRequest {
                    entry_id: entry.into(),
                    audience: vec!["db".into()],
                },
                Some(&a),
            )
            .await
            .expect("authorised");
        let answer = fixture.service.new_jwtsvid(request).await;
        match answer {
            Ok(svid) if allowed => {
                assert_eq!(svid.into_inner().svid.expect("an SVID").spiffe_id, mine)
            }
            Err(status) if !allowed => {
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            }
            other => panic!("{entry}: {other:?}"),
        }
    }
}
