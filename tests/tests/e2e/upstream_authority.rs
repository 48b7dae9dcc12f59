//! The server's CA as an intermediate under an existing PKI (SPIRE's `disk` UpstreamAuthority):
//! a root and an intermediate made with the `openssl` command line, as an operator would, sign
//! each of the server's CAs. The bundle carries the root only; SVID chains (leaf, the server's
//! CA, the upstream intermediate) verify with `openssl verify` and in an mTLS handshake between
//! two workloads built on the `spiffe` crate's `X509Source` and `spiffe-rustls`; rotation
//! keeps going, each new CA signed by the upstream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::dn::{issuer, subject};
use spiffe::{TrustDomain, WorkloadApiClient};
use tests::stack::{Agent, Server};
use tests::{openssl, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TD: &str = "example.org";
const WORKLOAD: &str = "spiffe://example.org/under-upstream";

/// An existing PKI: `root.pem`/`root.key` and `intermediate.pem`/`intermediate.key` signed by
/// it, P-256, PKCS#8 keys, made by openssl.
fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("pki dir");
    let p = |f: &str| dir.join(f).to_str().expect("UTF-8").to_owned();
    let ext = dir.join("ca.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .expect("ext file");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("root.key"),
        "-out",
        &p("root.pem"),
        "-days",
        "2",
        "-subj",
        "/O=Operator PKI/CN=Operator Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("intermediate.key"),
        "-out",
        &p("intermediate.csr"),
        "-subj",
        "/O=Operator PKI/CN=Operator Intermediate",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("intermediate.csr"),
        "-CA",
        &p("root.pem"),
        "-CAkey",
        &p("root.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        ext.to_str().expect("UTF-8"),
        "-out",
        &p("intermediate.pem"),
    ]);
    (
        dir.join("root.pem"),
        dir.join("intermediate.pem"),
        dir.join("intermediate.key"),
    )
}

fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .expect("PEM")
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

/// Writes `chain` (leaf first) and verifies it with `openssl verify` against `root` only.
fn openssl_verify(dir: &Path, root: &Path, chain: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).expect("dir");
    let write = |name: &str, certs: &[Vec<u8>]| {
        let text: String = certs
            .iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let leaf = write("leaf.pem", &chain[..1]);
    let untrusted = write("untrusted.pem", &chain[1..]);
    openssl(&[
        "verify".as_ref(),
        "-CAfile".as_ref(),
        root.as_os_str(),
        "-untrusted".as_ref(),
        untrusted.as_os_str(),
        leaf.as_os_str(),
    ]);
}

/// One mTLS handshake between two `spiffe-rustls` configs built from `source` (this process
/// as both ends): each side verifies the other's chain against the bundle of roots.
async fn handshake(source: &spiffe::X509Source) {
    let td = TrustDomain::new(TD).expect("td");
    let me = identity::SpiffeId::new(WORKLOAD).expect("id");
    let server = identity::workload::server_config(
        source.clone(),
        td.clone(),
        identity::workload::exactly(me.clone()),
    )
    .expect("server config");
    let client =
        identity::workload::client_config(source.clone(), td, identity::workload::exactly(me))
            .expect("client config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("server-side handshake");
        tls.write_all(b"!").await.expect("write");
        tls.shutdown().await.expect("shutdown");
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("workload").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("client-side handshake");
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await.expect("read");
    assert_eq!(&byte, b"!");
    served.await.expect("server task");
}

fn write_config(dir: &Path, cert: &Path, key: &Path, bundle: Option<&Path>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let mut text = format!(
        "[server.upstream_authority.disk]\ncert_file_path = {:?}\nkey_file_path = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    if let Some(bundle) = bundle {
        text.push_str(&format!(
            "bundle_file_path = {:?}\n",
            bundle.display().to_string()
        ));
    }
    let path = dir.join("server.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[tokio::test]
async fn the_ca_is_an_intermediate_under_the_operators_root_and_keeps_rotating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, intermediate, intermediate_key) = make_pki(&dir.path().join("pki"));
    let root_der = pem_certs(&std::fs::read_to_string(&root).expect("root"));
    let server_dir = dir.path().join("server");
    let config = write_config(&server_dir, &intermediate, &intermediate_key, Some(&root));
    let server = Server::start(
        &server_dir,
        TD,
        &[
            "-config",
            config.to_str().expect("UTF-8"),
            "-caTTL",
            "12s",
            "-defaultX509SVIDTTL",
            "4s",
        ],
    )
    .await;

    // The bundle is the operator's root and nothing else.
    let bundle = pem_certs(&server.cli_ok(&["bundle", "show"]));
    assert_eq!(
        bundle, root_der,
        "the bundle carries the upstream root only"
    );

    // A workload's SVID chain: leaf, the server's CA, the upstream intermediate.
    let agent = Agent::start_for_workload(&server, &dir.path().join("agent"), WORKLOAD).await;
    let svid = agent.fetch_svid().await;
    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(chain.len(), 3, "leaf, server CA, upstream intermediate");
    let intermediate_der = pem_certs(&std::fs::read_to_string(&intermediate).expect("pem"));
    assert_eq!(chain[2], intermediate_der[0]);
    assert_eq!(issuer(&chain[1]), subject(&chain[2]));
    openssl_verify(&dir.path().join("verify-1"), &root, &chain);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("Workload API");
    let bundles = client.fetch_x509_bundles().await.expect("bundles");
    let td = TrustDomain::new(TD).expect("td");
    let served: Vec<Vec<u8>> = bundles
        .get(&td)
        .expect("own bundle")
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(served, root_der, "workloads get the root as their bundle");
    let source = identity::workload::x509_source(Some(&agent.endpoint()), Duration::from_secs(20))
        .await
        .expect("X509Source");
    handshake(&source).await;

    // Rotation: the next CA is signed by the upstream too, and the bundle does not change.
    let first_ca = chain[1].clone();
    let rotated = wait_for("an SVID from the next CA", Duration::from_secs(40), || {
        let source = source.clone();
        let first_ca = first_ca.clone();
        async move {
            let svid = source.svid().ok()?;
            let chain: Vec<Vec<u8>> = svid
                .cert_chain()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect();
            (chain.len() == 3 && chain[1] != first_ca).then_some(chain)
        }
    })
    .await;
    assert_eq!(issuer(&rotated[1]), subject(&intermediate_der[0]));
    openssl_verify(&dir.path().join("verify-2"), &root, &rotated);
    handshake(&source).await;
    assert_eq!(
        pem_certs(&server.cli_ok(&["bundle", "show"])),
        root_der,
        "rotation under an upstream leaves the bundle alone"
    );
}

#[tokio::test]
async fn a_self_signed_upstream_is_the_root_and_bad_files_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, intermediate, intermediate_key) = make_pki(&dir.path().join("pki"));
    let root_key = dir.path().join("pki/root.key");
    let server_dir = dir.path().join("server");
    let config = write_config(&server_dir, &root, &root_key, None);
    let server = Server::start(
        &server_dir,
        TD,
        &["-config", config.to_str().expect("UTF-8")],
    )
    .await;
    let root_der = pem_certs(&std::fs::read_to_string(&root).expect("root"));
    assert_eq!(pem_certs(&server.cli_ok(&["bundle", "show"])), root_der);
    let mint = dir.path().join("mint");
    std::fs::create_dir_all(&mint).expect("dir");
    server.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        WORKLOAD,
        "-write",
        mint.to_str().expect("UTF-8"),
    ]);
    let chain = pem_certs(&std::fs::read_to_string(mint.join("svid.pem")).expect("svid"));
    assert_eq!(
        chain.len(),
        2,
        "leaf and the server's CA; the root is in the bundle"
    );
    openssl_verify(&dir.path().join("verify"), &root, &chain);
    drop(server);

    // Refused at start, with the reason: a key that is not the certificate's, an intermediate
    // without its roots, a certificate that is not a CA. Nothing is created.
    let leafish = dir.path().join("pki/leaf.pem");
    std::fs::write(
        &leafish,
        std::fs::read(mint.join("svid.pem")).expect("svid"),
    )
    .expect("copy");
    for (cert, key, bundle, expected) in [
        (&root, &intermediate_key, None, "does not match"),
        (&intermediate, &intermediate_key, None, "not self-signed"),
        (
            &leafish,
            &intermediate_key,
            Some(root.as_path()),
            "not a CA",
        ),
    ] {
        let fresh = tempfile::tempdir().expect("tempdir");
        let config = write_config(fresh.path(), cert, key, bundle);
        let out = Command::new(tests::bin("spire-server"))
            .args(["run", "-trustDomain", TD, "-bindAddress", "127.0.0.1"])
            .args(["-serverPort", "0"])
            .arg("-config")
            .arg(&config)
            .arg("-dataDir")
            .arg(fresh.path().join("data"))
            .arg("-socketPath")
            .arg(fresh.path().join("admin.sock"))
            .output()
            .expect("running spire-server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "must refuse: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} in: {stderr}");
        assert!(!fresh.path().join("data/ca-cert.pem").exists());
        assert!(!fresh.path().join("data/ca-key.pem").exists());
    }
}
