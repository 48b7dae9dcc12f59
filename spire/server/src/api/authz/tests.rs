//! Each requirement of the table against each kind of caller: anonymous TLS clients,
//! attested agents (current, superseded, banned, unknown) and local admin-socket callers.
//! The transport's view of the caller is injected as the listeners leave it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common_net::unix::UnixPeer;
use identity::listener::PeerInfo;
use spiffe::SpiffeId;
use spire_proto::refusal::{self, Reason};
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::datastore::AttestedAgent;

const AGENT_ID: &str = "spiffe://example.org/spire/agent/join_token/t1";

/// The callers a request can come from.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// A TLS client without a certificate.
    Anonymous,
    /// An attested agent with its current SVID (serial `01`).
    CurrentAgent,
    /// The same agent with an SVID it no longer uses (serial `00`).
    SupersededAgent,
    /// An agent SVID of an agent never attested.
    UnknownAgent,
    /// A process on the admin socket.
    Local,
}

const CALLERS: [Caller; 5] = [
    Caller::Anonymous,
    Caller::CurrentAgent,
    Caller::SupersededAgent,
    Caller::UnknownAgent,
    Caller::Local,
];

fn extensions(caller: Caller) -> http::Extensions {
    let mut extensions = http::Extensions::new();
    let agent = |id: &str, serial: &str| PeerInfo {
        spiffe_id: Some(SpiffeId::new(id).expect("SPIFFE ID")),
        serial_number: Some(serial.into()),
        remote_addr: "127.0.0.1:1".parse().expect("address"),
    };
    match caller {
        Caller::Anonymous => {
            extensions.insert(PeerInfo {
                spiffe_id: None,
                serial_number: None,
                remote_addr: "127.0.0.1:1".parse().expect("address"),
            });
        }
        Caller::CurrentAgent => {
            extensions.insert(agent(AGENT_ID, "01"));
        }
        Caller::SupersededAgent => {
            extensions.insert(agent(AGENT_ID, "00"));
        }
        Caller::UnknownAgent => {
            extensions.insert(agent("spiffe://example.org/spire/agent/x/never", "01"));
        }
        Caller::Local => {
            extensions.insert(UnixPeer {
                pid: Some(1),
                uid: 1000,
                gid: 1000,
            });
        }
    }
    extensions
}

async fn state_with_agent() -> (Arc<ServerState>, tempfile::TempDir) {
    let (state, dir) = crate::state::for_tests().await;
    state
        .datastore
        .upsert_attested_agent(&AttestedAgent {
            spiffe_id: AGENT_ID.into(),
            attestation_type: "join_token".into(),
            serial_number: "01".into(),
            expires_at: i64::MAX,
            new_serial_number: String::new(),
            new_expires_at: 0,
            selectors: vec![],
            can_reattest: false,
            banned: false,
        })
        .await
        .expect("agent");
    (state, dir)
}

/// A method of the table with `requirement`.
fn method_requiring(requirement: Requirement) -> String {
    let rule = TABLE
        .iter()
        .find(|rule| rule.requirement == requirement)
        .expect("a method with this requirement");
    format!("/{}/{}", rule.service, rule.method)
}

#[tokio::test]
async fn each_requirement_admits_its_callers_only_and_grants_what_it_proved() {
    let (state, _dir) = state_with_agent().await;
    for caller in CALLERS {
        // Anyone: every caller, and no grant (there is nothing to prove).
        let mut ext = extensions(caller);
        authorize(&state, &method_requiring(Requirement::Anyone), &mut ext)
            .await
            .unwrap_or_else(|e| panic!("{caller:?}: {e:?}"));
        assert!(ext.get::<AgentGrant>().is_none() && ext.get::<AdminGrant>().is_none());

        // Agent: only the attested agent with its current SVID.
        let mut ext = extensions(caller);
        let judged = authorize(&state, &method_requiring(Requirement::Agent), &mut ext).await;
        match (caller, judged) {
            (Caller::CurrentAgent, Ok(())) => {
                let grant = ext.get::<AgentGrant>().expect("agent grant");
                assert_eq!(grant.agent().to_string(), AGENT_ID);
                assert!(ext.get::<AdminGrant>().is_none());
            }
            (Caller::Anonymous | Caller::Local, Err(status)) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{caller:?}");
            }
            (Caller::SupersededAgent, Err(status)) => {
                assert_eq!(refusal::reason(&status), Some(Reason::AgentNotActive));
            }
            (Caller::UnknownAgent, Err(status)) => {
                assert_eq!(refusal::reason(&status), Some(Reason::AgentNotAttested));
            }
            (caller, judged) => panic!("{caller:?} on an agent method: {judged:?}"),
        }

        // Admin: only a caller of the admin socket, whatever certificate a TLS caller holds.
        let mut ext = extensions(caller);
        let judged = authorize(&state, &method_requiring(Requirement::Admin), &mut ext).await;
        match (caller, judged) {
            (Caller::Local, Ok(())) => {
                let grant = ext.get::<AdminGrant>().expect("admin grant");
                assert_eq!(grant.peer().uid, 1000);
                assert!(ext.get::<AgentGrant>().is_none());
            }
            (Caller::Local, Err(status)) => panic!("local caller refused: {status:?}"),
            (_, Ok(())) => panic!("{caller:?} was granted an admin method"),
            (_, Err(status)) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{caller:?}");
                assert!(ext.get::<AdminGrant>().is_none());
            }
        }
    }
}

#[tokio::test]
async fn a_method_missing_from_the_table_is_refused_whoever_calls() {
    let (state, _dir) = state_with_agent().await;
    for caller in CALLERS {
        for path in [
            "/spire.server.v1.Agent/Unlisted",
            "/spire.server.v1.Admin/RenewAgent",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            let mut ext = extensions(caller);
            let status = authorize(&state, path, &mut ext)
                .await
                .expect_err("unlisted");
            assert_eq!(status.code(), Code::PermissionDenied, "{caller:?} {path}");
            assert_eq!(
                status.message(),
                format!("{path} is not a method of this server")
            );
            assert!(ext.get::<AgentGrant>().is_none() && ext.get::<AdminGrant>().is_none());
        }
    }
}

#[tokio::test]
async fn the_layer_runs_a_handler_only_for_an_admitted_call_and_hands_it_the_grant() {
    let (state, _dir) = state_with_agent().await;
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let inner = tower::service_fn(move |request: http::Request<()>| {
        let counter = counter.clone();
        async move {
            assert!(request.extensions().get::<AdminGrant>().is_some());
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        }
    });
    let mut service = AuthorizeLayer::new(state).layer(inner);
    let call = |path: &str, caller: Caller| {
        let mut request = http::Request::builder()
            .uri(path)
            .body(())
            .expect("request");
        *request.extensions_mut() = extensions(caller);
        request
    };
    let grpc_status = |response: &http::Response<Body>| {
        tonic::Status::from_header_map(response.headers()).map(|s| s.code())
    };

    let refused = [
        ("/spire.server.v1.Admin/Unlisted", Caller::Local),
        ("/spire.server.v1.Admin/BanAgent", Caller::CurrentAgent),
    ];
    for (path, caller) in refused {
        let response = service
            .ready()
            .await
            .expect("ready")
            .call(call(path, caller))
            .await
            .expect("response");
        assert_eq!(
            grpc_status(&response),
            Some(Code::PermissionDenied),
            "{path}"
        );
    }
    assert_eq!(reached.load(Ordering::SeqCst), 0, "no handler ran");

    let response = service
        .ready()
        .await
        .expect("ready")
        .call(call("/spire.server.v1.Admin/BanAgent", Caller::Local))
        .await
        .expect("response");
    assert_eq!(grpc_status(&response), None, "served");
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}
