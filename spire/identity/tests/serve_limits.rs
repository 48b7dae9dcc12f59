//! `identity::http::serve`'s limits over real TLS on loopback, phase by phase: a flood of
//! connections that never start TLS does not keep an mTLS client out; an authenticated
//! client that sends nothing (or one byte) is disconnected; one client cannot take more than
//! its share of connections; past `max_connections` a connection waits for a slot; and every
//! refused handshake is counted by reason. Certificates come from throwaway CAs made here.
//!
//! Every wait for the server to act has a generous deadline that only a broken server hits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common_net::{Limits, NetMetrics};
use identity::http::ServeOptions;
use identity::svid_tls::{self, ClientAuth, SvidStore};
use prometheus_client::registry::Registry;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const PATIENCE: Duration = Duration::from_secs(30);

struct Pki {
    ca_der: Vec<u8>,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        Pki::named("td CA")
    }

    /// A CA whose subject's common name is `name`.
    fn named(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.subject_alt_names = vec![SanType::URI(
            Ia5String::try_from("spiffe://td").expect("uri"),
        )];
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        Pki {
            ca_der: ca.der().to_vec(),
            ca_params,
            ca_key,
        }
    }

    /// A store holding an SVID for `spiffe://td/<path>` and the CA as bundle.
    fn store(&self, path: &str) -> Arc<SvidStore> {
        self.store_trusting(path, &self.ca_der)
    }

    /// A store holding an SVID for `spiffe://td/<path>` from this CA, trusting `bundle`.
    fn store_trusting(&self, path: &str, bundle: &[u8]) -> Arc<SvidStore> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.subject_alt_names = vec![SanType::URI(
            Ia5String::try_from(format!("spiffe://td/{path}")).expect("uri"),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        let store = Arc::new(SvidStore::new(&[bundle.to_vec()]).expect("store"));
        store
            .set_svid(&[cert.der().to_vec()], &key.serialize_der())
            .expect("svid");
        store
    }
}

/// A server with `limits` answering every request with "ok", accepting every SPIFFE ID but
/// `spiffe://td/refused`; its address and its metrics' text.
struct Server {
    address: SocketAddr,
    registry: Registry,
}

impl Server {
    async fn start(pki: &Pki, limits: Limits) -> Server {
        let allowed: svid_tls::Authorizer =
            Arc::new(|id: &spiffe::SpiffeId| id.path() != "/refused");
        let tls = svid_tls::server_config(pki.store("server"), ClientAuth::Required(allowed))
            .expect("tls");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let net = NetMetrics::default();
        let mut registry = Registry::default();
        net.register(&mut registry);
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(identity::http::serve(
            listener,
            Arc::new(tls),
            app,
            ServeOptions::new(limits, net.listener("api")),
            std::future::pending(),
        ));
        Server { address, registry }
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    fn count(&self, family: &str, reason: &str) -> u64 {
        let prefix = format!("{family}_total{{listener=\"api\",reason=\"{reason}\"}} ");
        self.metrics()
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// An mTLS connection as `spiffe://td/<path>`, speaking HTTP/1.1 (no ALPN), as a raw stream.
async fn connect(
    pki: &Pki,
    path: &str,
    address: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_with(pki.store(path), address).await
}

async fn connect_with(
    store: Arc<SvidStore>,
    address: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let any: svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    let mut config = svid_tls::client_config(store, any).expect("tls");
    config.alpn_protocols.clear();
    let tcp = TcpStream::connect(address).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One request on `stream`; the start of the answer.
async fn request(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until the server closes the stream, or panics after `PATIENCE`.
async fn closed_by_server<S: AsyncReadExt + Unpin>(stream: &mut S, what: &str) {
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept {what} open");
}

#[tokio::test]
async fn a_flood_of_connections_that_never_start_tls_does_not_keep_a_client_out() {
    let pki = Pki::new();
    let limits = Limits {
        max_handshakes: 16,
        max_handshakes_per_ip: 8,
        ..Limits::TLS_API
    };
    let server = Server::start(&pki, limits).await;
    // Far more silent connections than the handshake budget; before it had a budget of its
    // own they took every connection slot for the whole handshake timeout.
    let mut flood = Vec::new();
    for _ in 0..500 {
        flood.push(TcpStream::connect(server.address).await.expect("flood"));
    }
    let started = std::time::Instant::now();
    let mut client = connect(&pki, "client", server.address)
        .await
        .expect("handshake");
    assert!(request(&mut client).await.starts_with("HTTP/1.1 200"));
    println!(
        "served through 500 silent connections in {:?}",
        started.elapsed()
    );
    assert!(
        server.count("tls_handshake_failures", "evicted") >= 400,
        "silent connections were pushed out: {}",
        server.metrics()
    );
}

#[tokio::test]
async fn an_authenticated_client_that_sends_nothing_or_one_byte_is_disconnected() {
    let pki = Pki::new();
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::TLS_API
    };
    let server = Server::start(&pki, limits).await;
    let mut silent = connect(&pki, "silent", server.address)
        .await
        .expect("handshake");
    let mut one_byte = connect(&pki, "one-byte", server.address)
        .await
        .expect("handshake");
    // `P` could start the HTTP/2 preface: the protocol stays undecided, and before the
    // watcher nothing bounded this phase.
    one_byte.write_all(b"P").await.expect("one byte");
    let mut partial = connect(&pki, "partial", server.address)
        .await
        .expect("handshake");
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    closed_by_server(&mut silent, "a silent connection").await;
    closed_by_server(&mut one_byte, "a one-byte connection").await;
    closed_by_server(&mut partial, "a connection with partial headers").await;
    assert_eq!(server.count("connections_closed", "header_timeout"), 3);
    // ...and it still serves everyone else.
    let mut fine = connect(&pki, "fine", server.address)
        .await
        .expect("handshake");
    assert!(request(&mut fine).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn one_client_gets_its_share_of_connections_and_others_still_get_in() {
    let pki = Pki::new();
    let limits = Limits {
        max_connections_per_source: 2,
        ..Limits::TLS_API
    };
    let server = Server::start(&pki, limits).await;
    let mut first = connect(&pki, "greedy", server.address)
        .await
        .expect("first");
    let mut second = connect(&pki, "greedy", server.address)
        .await
        .expect("second");
    assert!(request(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(request(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = connect(&pki, "greedy", server.address)
        .await
        .expect("third");
    closed_by_server(&mut third, "a third connection of one SPIFFE ID").await;
    assert_eq!(server.count("connections_refused", "per_source"), 1);
    let mut other = connect(&pki, "other", server.address).await.expect("other");
    assert!(request(&mut other).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_a_slot() {
    let pki = Pki::new();
    let limits = Limits {
        max_connections: 1,
        ..Limits::TLS_API
    };
    let server = Server::start(&pki, limits).await;
    let mut first = connect(&pki, "first", server.address).await.expect("first");
    assert!(request(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = connect(&pki, "second", server.address)
        .await
        .expect("second");
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    // While the first holds the only slot, the second is not served. Half a second of no
    // answer is the observation; a correct server never answers, so a slow machine cannot
    // fail this.
    let mut buf = vec![0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(early.is_err(), "served past max_connections = 1");
    drop(first);
    let n = tokio::time::timeout(PATIENCE, second.read(&mut buf))
        .await
        .expect("served once the first closed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let pki = Pki::new();
    let server = Server::start(&pki, Limits::TLS_API).await;
    // Plain HTTP on the TLS port.
    let mut plain = TcpStream::connect(server.address).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    closed_by_server(&mut plain, "a plain-HTTP connection").await;
    // SVIDs for the same trust domain from other CAs (forged identities): one whose issuer
    // is unknown, one that names the real CA as issuer but is not signed by it. (With TLS
    // 1.3 the client may finish its side before the server refuses; the server counts it
    // either way.)
    for forger in [Pki::named("forger CA"), Pki::new()] {
        let forged = forger.store_trusting("superuser", &pki.ca_der);
        let _ = connect_with(forged, server.address).await;
    }
    // A valid SVID the server's authorizer refuses.
    let _ = connect(&pki, "refused", server.address).await;
    for reason in ["not_tls", "unknown_issuer", "bad_signature", "wrong_role"] {
        let counted = tokio::time::timeout(PATIENCE, async {
            while server.count("tls_handshake_failures", reason) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            counted.is_ok(),
            "{reason} not counted: {}",
            server.metrics()
        );
    }
}

/// `HttpsClient` says why a handshake failed as a type, so callers explain it without
/// searching the message: the server's chain from an unknown CA, a server whose SPIFFE ID
/// the client does not accept, and a client the server refuses (its alert).
#[tokio::test]
async fn the_https_client_names_why_a_handshake_failed() {
    use identity::failure::HandshakeFailure;
    use identity::https_client::{HttpsClient, HttpsError};

    let pki = Pki::new();
    let server = Server::start(&pki, Limits::TLS_API).await;
    let url = HttpsClient::parse_url(&format!("https://{}/", server.address)).expect("url");
    let call = |store: Arc<SvidStore>, accept: svid_tls::Authorizer| {
        let url = url.clone();
        async move {
            let tls = svid_tls::client_config(store, accept).expect("tls");
            HttpsClient::new(tls, PATIENCE).get(url).await
        }
    };
    let any: svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    let reason = |result: Result<_, HttpsError>| match result {
        Err(HttpsError::Handshake { reason, .. }) => reason,
        other => panic!("expected a handshake failure, got {other:?}"),
    };

    let (status, _) = call(pki.store("client"), any.clone())
        .await
        .expect("the control call succeeds");
    assert!(status.is_success(), "{status}");

    let stranger = Pki::named("another CA");
    assert_eq!(
        reason(call(stranger.store("client"), any.clone()).await),
        HandshakeFailure::UnknownIssuer
    );
    let only_nexus: svid_tls::Authorizer =
        Arc::new(|id: &spiffe::SpiffeId| id.path() == "/spike/nexus");
    assert_eq!(
        reason(call(pki.store("client"), only_nexus).await),
        HandshakeFailure::WrongRole
    );
    assert_eq!(
        reason(call(pki.store("refused"), any).await),
        HandshakeFailure::PeerAlert
    );
}
