//! CA and JWT key rotation while workloads talk: a server with a 30 s CA lifetime rotates its
//! authorities every ten seconds or so, and two workloads using the `spiffe` crate's
//! `X509Source` keep doing mTLS handshakes through it, and through a server restart, without
//! a single failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::dn::{issuer, subject};
use spiffe::TrustDomain;
use tests::stack::{Agent, Server};
use tests::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/rotating";

#[tokio::test]
async fn ca_rotation_causes_no_failed_handshakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-caTTL", "30s", "-defaultX509SVIDTTL", "20s"],
    )
    .await;
    let agent = Agent::start_for_workload(&server, &dir.path().join("agent"), WORKLOAD).await;
    let first_cas = server.stored_cas();
    assert_eq!(first_cas.len(), 1, "one CA before any rotation");

    let source = identity::workload::x509_source(Some(&agent.endpoint()), Duration::from_secs(20))
        .await
        .expect("X509Source");
    let first_jwt = agent.validated_jwt("rotation-start").await;
    let td = TrustDomain::new(TD).expect("td");
    let me = identity::SpiffeId::new(WORKLOAD).expect("id");
    // Both sides built with spiffe-rustls directly (as `identity::workload` does) to get their
    // status handles: spiffe-rustls fails handshakes closed for the moment between the source
    // receiving an update and each side's conversion of it to TLS material
    // (`PendingRevision`). A failure while either side was converting is the library's, not
    // the rotation's; any other failure (an SVID its peer's bundle cannot verify, an expired
    // certificate) is a rotation bug and would also repeat on every handshake after it.
    let (server_tls, server_status) = spiffe_rustls::mtls_server(source.clone())
        .trust_domain_policy(spiffe_rustls::TrustDomainPolicy::LocalOnly(td.clone()))
        .authorize(identity::workload::exactly(me.clone()))
        .build_with_status()
        .expect("server config");
    let (client_tls, client_status) = spiffe_rustls::mtls_client(source.clone())
        .trust_domain_policy(spiffe_rustls::TrustDomainPolicy::LocalOnly(td))
        .authorize(identity::workload::exactly(me))
        .build_with_status()
        .expect("client config");
    let statuses = [client_status, server_status];

    // The serving workload: every accepted connection is handshaken and answered with one byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let server_failures = Arc::new(AtomicUsize::new(0));
    let accepted = {
        let failures = server_failures.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let _ = tls.write_all(b"!").await;
                            let _ = tls.shutdown().await;
                        }
                        Err(e) => {
                            eprintln!("server-side handshake failed: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        })
    };

    // The calling workload: handshakes back to back until three CAs have signed its SVIDs.
    let done = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let caller = {
        let done = done.clone();
        let attempts = attempts.clone();
        let source = source.clone();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));
        tokio::spawn(async move {
            let (mut ok, mut failures, mut overlapped) = (0usize, Vec::new(), 0usize);
            let mut issuers = BTreeSet::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok(svid) = source.svid() {
                    issuers.insert(issuer(svid.leaf().as_bytes()));
                }
                let name = rustls::pki_types::ServerName::try_from("workload").expect("name");
                let before = statuses.each_ref().map(|s| s.current());
                let result = async {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    let mut tls = connector.connect(name, tcp).await?;
                    let mut byte = [0u8; 1];
                    tls.read_exact(&mut byte).await?;
                    Ok::<_, std::io::Error>(())
                }
                .await;
                attempts.fetch_add(1, Ordering::Relaxed);
                let after = statuses.each_ref().map(|s| s.current());
                let converting = before.iter().zip(&after).any(|(b, a)| {
                    !b.available
                        || a.applied_revision != b.applied_revision
                        || a.source_revision != b.source_revision
                });
                match result {
                    Ok(()) => ok += 1,
                    Err(_) if converting => overlapped += 1,
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (ok, failures, overlapped, issuers)
        })
    };

    // Three issuers means two activations; restart the server after the first so the
    // rotation also goes on from what it stored.
    let current_issuer = || {
        source
            .svid()
            .ok()
            .map(|svid| issuer(svid.leaf().as_bytes()))
    };
    let first_issuer = current_issuer().expect("an SVID");
    let second_issuer = wait_for("a first CA activation", Duration::from_secs(60), || {
        let now = current_issuer().filter(|i| *i != first_issuer);
        async move { now }
    })
    .await;
    server.restart().await;
    wait_for("a second CA activation", Duration::from_secs(60), || {
        let now = current_issuer().filter(|i| *i != first_issuer && *i != second_issuer);
        async move { now }
    })
    .await;
    // Let the caller run a few more handshakes, so it has sampled the SVID now held too.
    let seen_at = attempts.load(Ordering::Relaxed);
    wait_for(
        "handshakes under the third CA",
        Duration::from_secs(30),
        || {
            let more = (attempts.load(Ordering::Relaxed) > seen_at + 10).then_some(());
            async move { more }
        },
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let (ok, failures, overlapped, issuers) = caller.await.expect("caller task");
    accepted.abort();
    eprintln!(
        "{ok} handshakes succeeded; {overlapped} overlapped an SVID or bundle update in the \
         client library"
    );

    assert!(
        failures.is_empty(),
        "{} of {} handshakes failed during CA rotation; first: {}",
        failures.len(),
        ok + failures.len() + overlapped,
        failures[0]
    );
    assert!(
        server_failures.load(Ordering::Relaxed) <= overlapped,
        "every server-side failure is one the client saw overlap an update"
    );
    assert!(
        issuers.len() >= 3,
        "SVIDs from three CAs were used: {issuers:?}"
    );
    assert!(ok > 50, "enough handshakes to mean something: {ok}");

    // The first CA expires and is pruned from the bundle; workloads never held more than the
    // CAs in use plus the prepared one.
    wait_for(
        "the first CA to be pruned",
        Duration::from_secs(30),
        || async { (!server.stored_cas().contains(&first_cas[0])).then_some(()) },
    )
    .await;
    let bundle = source
        .try_bundle_for_trust_domain(&TrustDomain::new(TD).expect("td"))
        .expect("bundle for the trust domain");
    assert!(
        bundle.authorities().len() <= 3,
        "{}",
        bundle.authorities().len()
    );
    let svid = source.svid().expect("svid");
    let signer = issuer(svid.leaf().as_bytes());
    assert!(
        bundle
            .authorities()
            .iter()
            .any(|ca| subject(ca.as_bytes()) == signer),
        "the current SVID's CA is in the workload's bundle"
    );

    // The JWT key rotated too: a fresh token carries a new key ID and validates offline.
    let last_jwt = agent.validated_jwt("rotation-end").await;
    assert_ne!(last_jwt.key_id(), first_jwt.key_id());
}
