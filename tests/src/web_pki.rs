//! Web PKI for tests: a CA of its own and a `localhost` serving certificate under it (the CA
//! file is what a process under test trusts, through `SSL_CERT_FILE` or its config), and
//! [`BundleHost`], an HTTPS server with that certificate serving SPIFFE bundles at paths the
//! test chooses, counting requests: a bundle endpoint of the `https_web` profile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What [`serving_cert`] wrote.
pub struct ServingCert {
    /// The `localhost` certificate (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The CA that issued it (PEM), for the client to trust.
    pub ca_path: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

/// A CA named `<name> CA` and a serving certificate for `localhost` and `127.0.0.1` it issued,
/// written as `<name>.pem`, `<name>.key` and `<name>-ca.pem` in `dir`.
pub fn serving_cert(dir: &Path, name: &str) -> ServingCert {
    std::fs::create_dir_all(dir).expect("dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf
        .signed_by(&key, &Issuer::new(ca, &ca_key))
        .expect("serving cert");
    let written = ServingCert {
        cert_path: dir.join(format!("{name}.pem")),
        key_path: dir.join(format!("{name}.key")),
        ca_path: dir.join(format!("{name}-ca.pem")),
        cert_der: leaf.der().to_vec(),
        key_der: key.serialize_der(),
    };
    std::fs::write(&written.cert_path, leaf.pem()).expect("cert");
    std::fs::write(&written.key_path, key.serialize_pem()).expect("key");
    std::fs::write(&written.ca_path, ca_cert.pem()).expect("CA");
    written
}

#[derive(Default)]
struct Page {
    body: String,
    hits: usize,
}

type Pages = Arc<Mutex<HashMap<String, Page>>>;

/// An HTTPS server on `127.0.0.1` with a [`serving_cert`], answering `GET <path>` with the
/// body set for that path (404 for others) and counting the requests for each path. Stops
/// when dropped.
pub struct BundleHost {
    pub port: u16,
    /// The CA of its certificate.
    pub ca_path: PathBuf,
    pages: Pages,
    task: tokio::task::JoinHandle<()>,
}

impl BundleHost {
    /// Starts a host whose certificate comes from a new CA named `name`, files in `dir`.
    pub async fn start(dir: &Path, name: &str) -> BundleHost {
        let cert = serving_cert(dir, name);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.cert_der.clone())], key)
            .expect("TLS config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let pages = Pages::default();
        let router = Router::new().fallback(page).with_state(pages.clone());
        let task = tokio::spawn(identity::http::serve(
            listener,
            Arc::new(tls),
            router,
            identity::http::ServeOptions::default(),
            std::future::pending(),
        ));
        BundleHost {
            port,
            ca_path: cert.ca_path,
            pages,
            task,
        }
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Serves `body` at `path` from now on.
    pub fn set(&self, path: &str, body: String) {
        self.lock().entry(path.to_owned()).or_default().body = body;
    }

    /// How many requests `path` has answered.
    pub fn hits(&self, path: &str) -> usize {
        self.lock().get(path).map_or(0, |p| p.hits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Page>> {
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for BundleHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn page(State(pages): State<Pages>, uri: Uri) -> Response {
    let mut pages = pages.lock().unwrap_or_else(PoisonError::into_inner);
    match pages.get_mut(uri.path()) {
        Some(page) => {
            page.hits += 1;
            (
                [(header::CONTENT_TYPE, "application/json")],
                page.body.clone(),
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
