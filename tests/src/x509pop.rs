//! x509pop node certificates for tests: a CA and a node certificate it issued, as the agent
//! and server read them from files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What [`node_pki`] wrote.
pub struct NodePki {
    /// The CA certificate (PEM), for the server's `ca_bundle_path`.
    pub ca_path: PathBuf,
    /// The node certificate's DER.
    pub node_cert_der: Vec<u8>,
    /// An agent config file whose x509pop attestor uses the node certificate and key.
    pub agent_config: PathBuf,
}

/// A CA named `<name> CA` and a node certificate `<name>` it issued, written as PEM files in
/// `dir` with an agent config that points at them.
pub fn node_pki(dir: &Path, name: &str) -> NodePki {
    std::fs::create_dir_all(dir).expect("dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");

    let node_key = KeyPair::generate().expect("node key");
    let mut node = CertificateParams::new(vec![format!("{name}.example")]).expect("params");
    node.distinguished_name.push(DnType::CommonName, name);
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let node_cert = node
        .signed_by(&node_key, &Issuer::new(ca, ca_key))
        .expect("node cert");

    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("node.pem");
    let key_path = dir.join("node.key");
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    std::fs::write(&cert_path, node_cert.pem()).expect("write cert");
    std::fs::write(&key_path, node_key.serialize_pem()).expect("write key");
    let agent_config = dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "[agent.node_attestor.x509pop]\ncertificate_path = {:?}\nprivate_key_path = {:?}\n",
            cert_path.display().to_string(),
            key_path.display().to_string()
        ),
    )
    .expect("write agent config");
    NodePki {
        ca_path,
        node_cert_der: node_cert.der().to_vec(),
        agent_config,
    }
}

/// An identity server of `trust_domain` in `<dir>/server` whose x509pop attestor trusts the
/// CA at `ca_path`, its config written to `<dir>/server.toml`.
pub async fn start_server(dir: &Path, trust_domain: &str, ca_path: &Path) -> crate::stack::Server {
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server.node_attestor.x509pop]\nca_bundle_path = {:?}\n",
            ca_path.display().to_string()
        ),
    )
    .expect("write server config");
    crate::stack::Server::start(
        &dir.join("server"),
        trust_domain,
        &["-config", config.to_str().expect("UTF-8")],
    )
    .await
}
