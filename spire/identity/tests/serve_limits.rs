//! `identity::http::serve`'s limits over real TLS on loopback: a client that never finishes
//! its request headers is disconnected, and connections past `max_connections` wait until
//! one closes. Certificates come from a throwaway CA made here.

use std::sync::Arc;
use std::time::Duration;

use identity::http::ServeLimits;
use identity::svid_tls::{self, ClientAuth, SvidStore};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Pki {
    ca_der: Vec<u8>,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
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
        let store = Arc::new(SvidStore::new(std::slice::from_ref(&self.ca_der)).expect("store"));
        store
            .set_svid(&[cert.der().to_vec()], &key.serialize_der())
            .expect("svid");
        store
    }
}

/// A server with `limits` answering every request with "ok"; its address.
async fn server(pki: &Pki, limits: ServeLimits) -> std::net::SocketAddr {
    let any: svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    let tls = svid_tls::server_config(pki.store("server"), ClientAuth::Required(any)).expect("tls");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(identity::http::serve(
        listener,
        Arc::new(tls),
        app,
        limits,
        std::future::pending(),
    ));
    address
}

/// An mTLS connection speaking HTTP/1.1 (no ALPN), as a raw stream.
async fn connect(
    pki: &Pki,
    address: std::net::SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let any: svid_tls::Authorizer = Arc::new(|_: &spiffe::SpiffeId| true);
    let mut config = svid_tls::client_config(pki.store("client"), any).expect("tls");
    config.alpn_protocols.clear();
    let tcp = TcpStream::connect(address).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn request(stream: &mut TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.expect("answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let pki = Pki::new();
    let address = server(
        &pki,
        ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        },
    )
    .await;
    let mut slow = connect(&pki, address).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    // The server closes the connection (an EOF or a 408 then EOF); without the timeout it
    // would wait for the rest forever, and this read would hit the test's own deadline.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server kept a header-less connection open"
    );
    // ...and it still serves everyone else.
    let mut fine = connect(&pki, address).await.expect("connect");
    assert!(request(&mut fine).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let pki = Pki::new();
    let address = server(
        &pki,
        ServeLimits {
            max_connections: 1,
            ..ServeLimits::default()
        },
    )
    .await;
    let mut first = connect(&pki, address).await.expect("first");
    assert!(request(&mut first).await.starts_with("HTTP/1.1 200"));
    // The second connection's handshake cannot complete while the first holds the only slot
    // (it waits in the kernel's accept queue). Half a second of it not completing is the
    // observation; a correct server never completes it, so a slow machine cannot fail this.
    let second = tokio::spawn({
        let pki = pki_clone(&pki);
        async move { connect(&pki, address).await }
    });
    let waited = tokio::time::timeout(Duration::from_millis(500), async {
        while !second.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_err(),
        "a second connection was served past max_connections = 1"
    );
    drop(first);
    let mut second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("served once the first closed")
        .expect("task")
        .expect("handshake");
    assert!(request(&mut second).await.starts_with("HTTP/1.1 200"));
}

/// The same CA (KeyPair is not Clone).
fn pki_clone(pki: &Pki) -> Pki {
    Pki {
        ca_der: pki.ca_der.clone(),
        ca_params: pki.ca_params.clone(),
        ca_key: KeyPair::try_from(pki.ca_key.serialize_der().as_slice()).expect("key"),
    }
}
