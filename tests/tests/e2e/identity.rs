//! The identity plane end to end: a real server and agent, real SPIFFE clients.

use std::sync::Arc;
use std::time::Duration;

use spiffe::{WorkloadApiClient, X509Source};
use spire_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tests::stack::{Agent, Server};
use tests::wait_for;
use x509_parser::prelude::*;

const TD: &str = "example.org";

fn uid() -> String {
    nix::unistd::geteuid().as_raw().to_string()
}

/// A server, an agent attested with a fresh token, and the agent's ID.
async fn stack(dir: &std::path::Path) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), TD, &[]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.join("agent"), Some(&token)).await;
    let agent_id = server.agent_id(&token);
    (server, agent, agent_id)
}

async fn client(agent: &Agent) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connecting to the Workload API")
}

/// SPIRE's `NotBefore` cushion (`x509svid.NotBeforeCushion`, 10 s); the server back-dates by
/// the same amount (`NOT_BEFORE_BACKDATE` in spire/server/src/ca).
const NOT_BEFORE_CUSHION: i64 = 10;

/// The validity an X509-SVID must have.
#[derive(Clone, Copy, Debug)]
enum Lifetime {
    /// `NotAfter - NotBefore` is exactly the TTL (seconds) plus the cushion.
    Ttl(i64),
    /// The TTL (seconds) would outlive the issuing CA: `NotAfter` is the CA's `NotAfter`.
    CappedByCa(i64),
}

/// What a particular X509-SVID must hold besides the rules every SVID follows.
struct Expected<'a> {
    spiffe_id: &'a str,
    /// The entry's DNS names, in order (SPIRE copies them into the SAN and the first into CN).
    dns: &'a [&'a str],
    lifetime: Lifetime,
    /// Unix time (whole seconds) read before the SVID can have been signed.
    signed_after: i64,
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_secs()).expect("time fits i64")
}

fn parse_cert(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("a DER certificate");
    assert!(rest.is_empty(), "trailing bytes after a certificate");
    cert
}

/// RFC 5280 §4.1.2.2 plus SPIRE's rule (`x509util.NewSerialNumber`): a positive, minimally
/// encoded INTEGER of at most 20 octets, drawn uniformly from [1, 2^128 - 1]. A value below
/// 2^64 would mean the randomness was truncated (chance 2^-64 for a real 128-bit draw).
fn assert_positive_128_bit_serial(cert: &X509Certificate<'_>) {
    let raw = cert.raw_serial();
    assert!(
        !raw.is_empty() && raw.len() <= 20,
        "serial of {} octets",
        raw.len()
    );
    assert_eq!(raw[0] & 0x80, 0, "serial must be a positive INTEGER");
    if raw.len() > 1 {
        assert!(
            raw[0] != 0 || raw[1] & 0x80 != 0,
            "serial must be minimally encoded: {raw:02x?}"
        );
    }
    let magnitude = raw.strip_prefix(&[0]).unwrap_or(raw);
    assert!(
        magnitude.len() <= 16,
        "serial wider than 128 bits: {raw:02x?}"
    );
    assert!(raw.iter().any(|b| *b != 0), "serial must not be zero");
    assert!(
        cert.tbs_certificate.serial.bits() > 64,
        "serial {raw:02x?} does not carry 128 random bits"
    );
}

/// RFC 5280 path validation by webpki (through rustls' client-certificate verifier, which
/// also requires the clientAuth EKU): `chain` (leaf first) up to a root in `roots`, at `at`.
fn verify_path(chain: &[&[u8]], roots: &[&[u8]], at: i64) -> Result<(), rustls::Error> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(roots)),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("a client certificate verifier");
    let (leaf, intermediates) = der_chain(chain);
    verifier
        .verify_client_cert(&leaf, &intermediates, unix_time(at))
        .map(|_| ())
}

/// The same path validation for a TLS server named `dns_name` (serverAuth EKU, DNS SAN).
fn verify_server_path(
    chain: &[&[u8]],
    roots: &[&[u8]],
    dns_name: &str,
) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(root_store(roots)),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("a server certificate verifier");
    let (leaf, intermediates) = der_chain(chain);
    let name = rustls_pki_types::ServerName::try_from(dns_name.to_owned()).expect("DNS name");
    verifier
        .verify_server_cert(&leaf, &intermediates, &name, &[], unix_time(unix_now()))
        .map(|_| ())
}

fn root_store(roots: &[&[u8]]) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store
            .add(rustls_pki_types::CertificateDer::from(ca.to_vec()))
            .expect("the bundle's CA is a usable trust anchor");
    }
    store
}

fn der_chain(
    chain: &[&[u8]],
) -> (
    rustls_pki_types::CertificateDer<'static>,
    Vec<rustls_pki_types::CertificateDer<'static>>,
) {
    let der = |c: &&[u8]| rustls_pki_types::CertificateDer::from(c.to_vec());
    (
        der(&chain[0]),
        chain[1..].iter().map(der).collect::<Vec<_>>(),
    )
}

fn unix_time(secs: i64) -> rustls_pki_types::UnixTime {
    rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(secs).expect("time after 1970"),
    ))
}

/// A leaf claiming `spiffe_id` whose issuer name is `ca_der`'s subject but which is signed by
/// another key: what a path validator that only matched names would accept.
fn forged_leaf(ca_der: &[u8], spiffe_id: &str) -> Vec<u8> {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
    let impostor = KeyPair::generate().expect("key");
    let ca = rustls_pki_types::CertificateDer::from(ca_der.to_vec());
    let issuer = Issuer::from_ca_cert_der(&ca, impostor).expect("issuer");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().expect("IA5 URI"))];
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_key = KeyPair::generate().expect("key");
    params
        .signed_by(&leaf_key, &issuer)
        .expect("forged leaf")
        .der()
        .to_vec()
}

/// The DER certificates of an SVID's chain, in the order the Workload API sent them.
fn svid_chain(svid: &spiffe::X509Svid) -> Vec<&[u8]> {
    svid.cert_chain().iter().map(AsRef::as_ref).collect()
}

/// Checks an X509-SVID (`chain`, leaf first, and its PKCS#8 `key`) against the X509-SVID
/// standard and what SPIRE emits (docs in /work/shared/SPIFFE-SPIRE.md), and validates it
/// against `bundle`, the CAs of its trust domain.
fn assert_x509_svid_rules(chain: &[&[u8]], key: &[u8], bundle: &[&[u8]], want: &Expected<'_>) {
    let leaf = parse_cert(chain.first().expect("a non-empty chain"));

    // Leaf first (Workload API §5.1): the first certificate is the SVID, the rest its CAs.
    let uris: Vec<&str> = leaf
        .subject_alternative_name()
        .expect("one well-formed SAN extension")
        .expect("SAN present")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(
        uris,
        [want.spiffe_id],
        "X509-SVID §2: exactly one URI SAN, the SPIFFE ID"
    );
    for intermediate in &chain[1..] {
        assert!(parse_cert(intermediate).is_ca(), "only CAs follow the leaf");
    }

    // DNS names from the entry, in order; the first is also the CN, as SPIRE does.
    let dns: Vec<&str> = leaf
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN present")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(dns, want.dns, "the entry's DNS SANs");
    let cn: Vec<&str> = leaf
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().expect("UTF-8 CN"))
        .collect();
    assert_eq!(
        cn,
        want.dns.first().into_iter().copied().collect::<Vec<_>>()
    );

    // X509-SVID §4.1; Go's crypto/x509 (so SPIRE) marks basicConstraints critical.
    let bc = leaf
        .basic_constraints()
        .expect("one basicConstraints")
        .expect("basicConstraints present");
    assert!(bc.critical, "basicConstraints critical, as SPIRE emits it");
    assert!(!bc.value.ca, "X509-SVID §4.1: a leaf is not a CA");
    assert_eq!(bc.value.path_len_constraint, None);

    // X509-SVID §4.3: critical keyUsage with digitalSignature, never certificate or CRL
    // signing; SPIRE also sets keyEncipherment and keyAgreement, and nothing else.
    let ku = leaf
        .key_usage()
        .expect("one keyUsage")
        .expect("keyUsage present");
    assert!(ku.critical, "X509-SVID §4.3: keyUsage is critical");
    let ku = ku.value;
    assert!(ku.digital_signature(), "digitalSignature");
    assert!(
        ku.key_encipherment() && ku.key_agreement(),
        "SPIRE's key usages"
    );
    assert!(
        !ku.key_cert_sign() && !ku.crl_sign(),
        "X509-SVID §4.3: no signing"
    );
    assert!(
        !ku.non_repudiation()
            && !ku.data_encipherment()
            && !ku.encipher_only()
            && !ku.decipher_only(),
        "no key usage SPIRE does not set: {ku}"
    );

    // X509-SVID §4.4: serverAuth and clientAuth, nothing else.
    let eku = leaf
        .extended_key_usage()
        .expect("one EKU")
        .expect("EKU present")
        .value;
    assert!(
        eku.server_auth && eku.client_auth,
        "serverAuth + clientAuth"
    );
    assert!(
        !eku.any
            && !eku.code_signing
            && !eku.email_protection
            && !eku.time_stamping
            && !eku.ocsp_signing
            && eku.other.is_empty(),
        "no other extended key usage: {eku:?}"
    );

    assert_positive_128_bit_serial(&leaf);

    // The CA that signed the leaf: the next certificate, or the bundle CA that verifies it.
    let signer_der = match chain.get(1) {
        Some(next) => *next,
        None => *bundle
            .iter()
            .find(|ca| {
                leaf.verify_signature(Some(parse_cert(ca).public_key()))
                    .is_ok()
            })
            .expect("a bundle CA signed the leaf"),
    };
    let signer = parse_cert(signer_der);

    // Validity: NotBefore back-dated by the cushion; NotAfter = now + TTL, capped at the CA's.
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let now = unix_now();
    assert!(
        (want.signed_after..=now).contains(&(not_before + NOT_BEFORE_CUSHION)),
        "NotBefore {not_before} is not the signing time (between {} and {now}) minus \
         {NOT_BEFORE_CUSHION} s",
        want.signed_after
    );
    let ca_not_after = signer.validity().not_after.timestamp();
    assert!(not_after <= ca_not_after, "NotAfter within the CA's life");
    match want.lifetime {
        Lifetime::Ttl(ttl) => assert_eq!(
            not_after - not_before,
            ttl + NOT_BEFORE_CUSHION,
            "NotAfter - NotBefore = TTL + cushion"
        ),
        Lifetime::CappedByCa(ttl) => {
            assert_eq!(
                not_after, ca_not_after,
                "NotAfter capped at the CA's NotAfter"
            );
            assert!(
                not_after - not_before < ttl + NOT_BEFORE_CUSHION,
                "the CA must expire before the TTL for this check to mean anything"
            );
        }
    }

    // The private key (PKCS#8) is the leaf's: same public key, and its signature verifies
    // under the certificate's SPKI.
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        key,
        &rng,
    )
    .expect("a PKCS#8 P-256 private key");
    let spki = leaf.public_key().subject_public_key.data.as_ref();
    use ring::signature::KeyPair as _;
    assert_eq!(pair.public_key().as_ref(), spki, "the key matches the leaf");
    let message = b"proof of possession";
    let signature = pair.sign(&rng, message).expect("sign");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, spki)
        .verify(message, signature.as_ref())
        .expect("a signature by the key verifies with the leaf's public key");

    // RFC 5280 path validation to the bundle, with time: valid now, not before NotBefore
    // nor after NotAfter, and not when the signature is by another key under the CA's name.
    verify_path(chain, bundle, now).expect("the chain validates against the bundle now");
    let err = verify_path(chain, bundle, not_after + 1).expect_err("expired after NotAfter");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
            )
        ),
        "{err:?}"
    );
    let err = verify_path(chain, bundle, not_before - 1).expect_err("not valid yet");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidYet
                    | rustls::CertificateError::NotValidYetContext { .. }
            )
        ),
        "{err:?}"
    );
    let forged = forged_leaf(signer_der, want.spiffe_id);
    let err = verify_path(&[&forged], bundle, now).expect_err("a forged leaf is refused");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
        ),
        "the forged leaf names the CA but fails its signature check: {err:?}"
    );
    if let Some(name) = want.dns.first() {
        verify_server_path(chain, bundle, name).expect("valid as a TLS server for its DNS name");
    }
}

#[tokio::test]
async fn real_clients_fetch_and_validate_svids_from_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let app_id = "spiffe://example.org/app";
    let signed_after = unix_now();
    server.create_entry(
        app_id,
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &[
            "-dns",
            "app.internal",
            "-dns",
            "app.example",
            "-x509SVIDTTL",
            "900",
        ],
    );

    let svid = agent.fetch_svid().await;
    assert_eq!(svid.spiffe_id().to_string(), app_id);

    let bundles = client(&agent)
        .await
        .fetch_x509_bundles()
        .await
        .expect("bundles");
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let bundle = bundles.get(&td).expect("own trust domain bundle");
    assert_eq!(bundle.authorities().len(), 1, "one CA");
    let ca = bundle.authorities()[0].as_ref().to_vec();
    // A self-signed CA and no upstream: the chain is the leaf alone, as SPIRE sends it.
    assert_eq!(svid.cert_chain().len(), 1, "no intermediates");
    assert_eq!(svid.cert_chain()[0], *svid.leaf());
    assert_x509_svid_rules(
        &svid_chain(&svid),
        svid.private_key().as_ref(),
        &[&ca],
        &Expected {
            spiffe_id: app_id,
            dns: &["app.internal", "app.example"],
            lifetime: Lifetime::Ttl(900),
            signed_after,
        },
    );

    // The X509Source used by every workload in this project sees the same identity.
    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("X509Source");
    assert_eq!(source.svid().expect("svid").spiffe_id().to_string(), app_id);

    // The server's own view: the agent is listed and the bundle is the one workloads got.
    let agents = server.cli_ok(&["agent", "list"]);
    assert!(agents.contains(&agent_id), "{agents}");
    let shown = server.cli_ok(&["bundle", "show"]);
    let parsed = ::pem::parse(shown.trim()).expect("bundle PEM");
    assert_eq!(parsed.contents(), ca.as_slice());
}

#[tokio::test]
async fn two_workloads_do_mtls_and_see_each_others_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let me = std::env::current_exe()
        .expect("test exe")
        .canonicalize()
        .expect("canonical");
    let peer_bin = tests::bin("mtls-peer").canonicalize().expect("peer binary");
    let server_id = "spiffe://example.org/workload/server";
    let client_id = "spiffe://example.org/workload/client";
    let uid = format!("unix:uid:{}", uid());
    server.create_entry(
        server_id,
        &agent_id,
        &[&uid, &format!("unix:path:{}", me.display())],
        &[],
    );
    server.create_entry(
        client_id,
        &agent_id,
        &[&uid, &format!("unix:path:{}", peer_bin.display())],
        &[],
    );

    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("X509Source for the server workload");
    assert_eq!(
        source.svid().expect("svid").spiffe_id().to_string(),
        server_id
    );
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let client = identity::SpiffeId::new(client_id).expect("id");
    let config = identity::workload::server_config(source, td, identity::workload::exactly(client))
        .expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("handshake");
        let peer = identity::peer::peer_spiffe_id(tls.get_ref().1).expect("client SVID");
        use tokio::io::AsyncWriteExt;
        tls.write_all(format!("{peer}\n").as_bytes())
            .await
            .expect("write");
        tls.shutdown().await.ok();
        peer.to_string()
    });

    let output = tokio::process::Command::new(&peer_bin)
        .args([addr.to_string(), server_id.to_string()])
        .env("SPIFFE_ENDPOINT_SOCKET", agent.endpoint())
        .output()
        .await
        .expect("running mtls-peer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mtls-peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("server={server_id}")), "{stdout}");
    assert!(stdout.contains(&format!("seen-as={client_id}")), "{stdout}");
    assert_eq!(accept.await.expect("server task"), client_id);
}

#[tokio::test]
async fn svids_rotate_before_expiry_and_deleted_entries_end_the_stream() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent, agent_id) = stack(dir.path()).await;
    let entry = server.create_entry(
        "spiffe://example.org/short",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &["-x509SVIDTTL", "4"],
    );
    agent.fetch_svid().await;
    let mut stream = client(&agent)
        .await
        .stream_x509_svids()
        .await
        .expect("stream");
    let first = stream
        .next()
        .await
        .expect("first message")
        .expect("first SVID");
    let first_leaf = first.leaf().as_ref().to_vec();
    let (_, cert) = X509Certificate::from_der(&first_leaf).expect("leaf");
    let first_expiry = cert.validity().not_after.timestamp();

    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let svid = stream
                .next()
                .await
                .expect("stream open")
                .expect("rotated SVID");
            if svid.leaf().as_ref() != first_leaf.as_slice() {
                return svid;
            }
        }
    })
    .await
    .expect("a rotated SVID within 10s");
    let received_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        received_at < first_expiry,
        "the new SVID must arrive before the old one expires"
    );
    assert_eq!(next.spiffe_id().to_string(), "spiffe://example.org/short");

    server.cli_ok(&["entry", "delete", "-entryID", &entry]);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("stream ends after the entry is deleted");
    // Workload API §5.3: redacting every SVID ends the stream with PermissionDenied; rust-spiffe
    // maps exactly that code with SPIRE's "no identity issued" to this variant.
    assert!(
        matches!(end, Some(spiffe::WorkloadApiError::NoIdentityIssued)),
        "the stream must end with PermissionDenied \"no identity issued\": {end:?}"
    );
}

/// Our generated Workload API client, with the security header.
async fn raw_client(
    socket: &std::path::Path,
) -> SpiffeWorkloadApiClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = spire_proto::uds::connect(socket).await.expect("channel");
    SpiffeWorkloadApiClient::with_interceptor(channel, |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("workload.spiffe.io", "true".parse().expect("ascii"));
        Ok(req)
    })
}

/// The status of a streaming call: refused at once, or as its first message (both are
/// valid gRPC ways to refuse a stream).
async fn first_status<T>(
    call: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
) -> tonic::Status {
    match call {
        Err(status) => status,
        Ok(response) => match response.into_inner().message().await {
            Err(status) => status,
            Ok(message) => panic!("expected a refusal, got a message: {}", message.is_some()),
        },
    }
}

/// What each Workload API RPC answers a caller without an identity, through `socket`.
async fn denied_status(socket: &std::path::Path) -> Vec<(&'static str, tonic::Status)> {
    use spire_proto::workload as wl;
    let mut client = raw_client(socket).await;
    vec![
        (
            "FetchX509SVID",
            first_status(client.fetch_x509svid(wl::X509svidRequest {}).await).await,
        ),
        (
            "FetchX509Bundles",
            first_status(client.fetch_x509_bundles(wl::X509BundlesRequest {}).await).await,
        ),
        (
            "FetchJWTBundles",
            first_status(client.fetch_jwt_bundles(wl::JwtBundlesRequest {}).await).await,
        ),
        (
            "FetchJWTSVID",
            client
                .fetch_jwtsvid(wl::JwtsvidRequest {
                    audience: vec!["aud".into()],
                    spiffe_id: String::new(),
                })
                .await
                .expect_err("no identity, no JWT-SVID"),
        ),
    ]
}

/// Workload API §6 and SPIRE: PermissionDenied, "no identity issued".
fn assert_no_identity(statuses: &[(&str, tonic::Status)]) {
    for (rpc, status) in statuses {
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{rpc}: {status:?}"
        );
        assert!(
            status.message().contains("no identity issued"),
            "{rpc}: {status:?}"
        );
    }
}

#[tokio::test]
async fn workload_api_refuses_missing_header_and_unknown_callers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, agent, _agent_id) = stack(dir.path()).await;

    // No entry matches this process: PermissionDenied with SPIRE's wording, which rust-spiffe
    // maps to NoIdentityIssued (and any other PermissionDenied to PermissionDenied(_)).
    let err = client(&agent)
        .await
        .fetch_x509_svid()
        .await
        .expect_err("no entry yet");
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );
    // The same on the wire, for every Workload API RPC: the code, and the text clients key on.
    assert_no_identity(&denied_status(&agent.socket).await);

    // Without the security header: InvalidArgument, before any attestation.
    let channel = spire_proto::uds::connect(&agent.socket)
        .await
        .expect("channel");
    let status = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(spire_proto::workload::X509svidRequest {})
        .await
        .expect_err("header required");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("security header"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn entry_create_rejects_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let parent = "spiffe://example.org/spire/agent/join_token/x";
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "-spiffeID",
                "spiffe://Example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a//b",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "http://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "spiffeID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://other.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "trust domain",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                "nope",
                "-selector",
                "unix:uid:1",
            ],
            "parentID",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix",
            ],
            "type:value",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                parent,
                "-selector",
                "unix:",
            ],
            "value is empty",
        ),
        (
            &[
                "-spiffeID",
                "spiffe://example.org/spire/server",
                "-parentID",
                parent,
                "-selector",
                "unix:uid:1",
            ],
            "reserved namespace",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["entry", "create"];
        args.extend_from_slice(flags);
        let out = server.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} should fail");
        assert!(
            stderr.contains(expected),
            "{flags:?}: expected {expected:?} in {stderr}"
        );
    }
    // Nor may the server's or an agent's identity be minted, or made a join token's alias.
    for args in [
        &[
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/spire/server",
        ][..],
        &[
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/spire/agent/x",
            "-audience",
            "a",
        ],
        &[
            "token",
            "generate",
            "-spiffeID",
            "spiffe://example.org/spire/agent/x",
        ],
    ] {
        let out = server.cli(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains("reserved namespace"), "{args:?}: {stderr}");
    }
    let shown = server.cli_ok(&["entry", "show"]);
    assert!(
        shown.starts_with("Found 0 entries"),
        "nothing was written: {shown}"
    );

    // A duplicate of an existing entry is refused, and the first one is untouched.
    let flags = ["-selector", "unix:uid:1"];
    server.create_entry("spiffe://example.org/a", parent, &[], &flags);
    let mut dup = vec![
        "entry",
        "create",
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        parent,
    ];
    dup.extend_from_slice(&flags);
    let out = server.cli(&dup);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert!(
        server
            .cli_ok(&["entry", "show"])
            .starts_with("Found 1 entry")
    );
}

#[tokio::test]
async fn join_tokens_are_single_use_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let bundle = server.write_bundle();

    let token = server.join_token(&[]);
    let _first = Agent::start(&server, &dir.path().join("a1"), Some(&token)).await;
    let first_id = server.agent_id(&token);
    assert_eq!(server.agent_ids(), std::slice::from_ref(&first_id));
    let mut reuse = Agent::spawn(&server, &dir.path().join("a2"), Some(&token), &bundle);
    let status = reuse.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = reuse.process.log();
    assert!(
        log.contains("does not exist or has already been used"),
        "{log}"
    );
    // The reused token created nothing and changed nothing.
    assert_eq!(server.agent_ids(), std::slice::from_ref(&first_id));

    let short = server.join_token(&["-ttl", "1"]);
    // The token expires one second after it was generated (whole seconds, by the server's
    // clock, which is this machine's): wait on the clock until that has surely passed.
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    let generated = unix_now();
    wait_for("the short token to expire", Duration::from_secs(10), || {
        let expired = unix_now() > generated + 1;
        async move { expired.then_some(()) }
    })
    .await;
    let mut late = Agent::spawn(&server, &dir.path().join("a3"), Some(&short), &bundle);
    let status = late.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = late.process.log();
    assert!(log.contains("join token expired"), "{log}");
    assert_eq!(
        server.agent_ids(),
        [first_id],
        "an expired token creates no agent record"
    );
    assert!(
        !server.agent_ids().contains(&server.agent_id(&short)),
        "the expired token's agent is not listed"
    );
}

#[tokio::test]
async fn agents_restart_without_a_token_until_evicted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut agent, agent_id) = stack(dir.path()).await;
    server.create_entry(
        "spiffe://example.org/app",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    agent.fetch_svid().await;

    // Restart with the data dir and no token: the stored agent SVID is enough.
    agent.process.kill();
    let agent = Agent::start(&server, &dir.path().join("agent"), None).await;
    assert_eq!(
        agent.fetch_svid().await.spiffe_id().to_string(),
        "spiffe://example.org/app"
    );
    assert_eq!(server.agent_ids(), std::slice::from_ref(&agent_id));
    drop(agent);

    server.cli_ok(&["agent", "evict", "-spiffeID", &agent_id]);
    assert_eq!(server.agent_ids(), Vec::<String>::new());
    let bundle = server.write_bundle();
    let mut evicted = Agent::spawn(&server, &dir.path().join("agent"), None, &bundle);
    let status = evicted.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = evicted.process.log();
    assert!(
        log.contains("not attested") && log.contains("new join token"),
        "{log}"
    );
    // The refused agent wrote nothing back, and dropped the SVID it can no longer use.
    assert_eq!(server.agent_ids(), Vec::<String>::new());
    assert!(!evicted.data_dir.join("agent-svid.pem").exists());
}

#[tokio::test]
async fn agent_refuses_a_server_outside_its_trust_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let other = Server::start(&dir.path().join("other"), TD, &[]).await;
    let token = server.join_token(&[]);
    let wrong_bundle = other.write_bundle();
    let mut agent = Agent::spawn(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &wrong_bundle,
    );
    let status = agent.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = agent.process.log();
    assert!(
        log.contains("is -trustBundle this trust domain's bundle?"),
        "{log}"
    );
    // The token was not consumed by the failed attempt.
    let _ok = Agent::start(&server, &dir.path().join("agent2"), Some(&token)).await;
}

#[tokio::test]
async fn server_runs_on_postgresql() {
    let db = common_sql::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-dataStore", db.url()]).await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    server.create_entry(
        "spiffe://example.org/pg",
        &server.agent_id(&token),
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    assert_eq!(
        agent.fetch_svid().await.spiffe_id().to_string(),
        "spiffe://example.org/pg"
    );
}

#[tokio::test]
async fn admin_cli_updates_entries_mints_svids_and_prints_spiffe_bundles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let parent = "spiffe://example.org/spire/agent/join_token/x";
    let id = server.create_entry("spiffe://example.org/a", parent, &["unix:uid:1"], &[]);
    let updated = server.cli_ok(&[
        "entry",
        "update",
        "-entryID",
        &id,
        "-spiffeID",
        "spiffe://example.org/b",
        "-parentID",
        parent,
        "-selector",
        "unix:uid:2",
        "-x509SVIDTTL",
        "60",
        "-hint",
        "internal",
        "-output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&updated).expect("json");
    assert_eq!(json["spiffe_id"], "spiffe://example.org/b");
    assert_eq!(json["revision_number"], 1);
    assert_eq!(json["x509_svid_ttl"], 60);
    let shown = server.cli_ok(&["entry", "show", "-selector", "unix:uid:2"]);
    assert!(shown.contains("Hint             : internal"), "{shown}");

    let out = dir.path().join("minted");
    std::fs::create_dir_all(&out).expect("dir");
    let signed_after = unix_now();
    server.cli_ok(&[
        "x509",
        "mint",
        "-spiffeID",
        "spiffe://example.org/minted",
        "-ttl",
        "120",
        "-dns",
        "minted.internal",
        "-write",
        out.to_str().expect("utf8"),
    ]);
    let pems = |name: &str| -> Vec<::pem::Pem> {
        ::pem::parse_many(std::fs::read(out.join(name)).expect(name)).expect("PEM")
    };
    let (svid, key, bundle) = (pems("svid.pem"), pems("key.pem"), pems("bundle.pem"));
    assert_eq!(key.len(), 1);
    assert_eq!(key[0].tag(), "PRIVATE KEY", "PKCS#8");
    assert_x509_svid_rules(
        &svid.iter().map(::pem::Pem::contents).collect::<Vec<_>>(),
        key[0].contents(),
        &bundle.iter().map(::pem::Pem::contents).collect::<Vec<_>>(),
        &Expected {
            spiffe_id: "spiffe://example.org/minted",
            dns: &["minted.internal"],
            lifetime: Lifetime::Ttl(120),
            signed_after,
        },
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the minted key is readable only by its owner"
    );

    let doc: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
            .expect("JWKS");
    let keys = doc["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "the CA and the JWT signing key: {doc}");
    assert_eq!(keys[0]["use"], "x509-svid");
    assert!(
        keys[0].get("kid").is_none(),
        "X509-SVID §6: x509 authorities carry no kid"
    );
    assert_eq!(keys[0]["x5c"].as_array().expect("x5c").len(), 1);
    assert_eq!(keys[1]["use"], "jwt-svid");
    assert_eq!(keys[1]["kty"], "EC");
    assert_eq!(keys[1]["crv"], "P-256");
    assert_eq!(
        keys[1]["kid"].as_str().map(str::len),
        Some(32),
        "JWT-SVID §6: JWT authorities carry a kid"
    );
    assert!(keys[1].get("x5c").is_none());
    assert!(doc["spiffe_sequence"].as_i64().expect("sequence") >= 1);
}

#[tokio::test]
async fn agent_renews_its_own_svid_at_half_life() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-agentTTL", "4s"]).await;
    let token = server.join_token(&[]);
    let _agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let serial = || {
        let list: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["agent", "list", "-output", "json"]))
                .expect("json");
        list["agents"][0]["x509svid_serial_number"]
            .as_str()
            .expect("serial")
            .to_owned()
    };
    let first = serial();
    let renewed = wait_for(
        "the agent to renew its SVID",
        Duration::from_secs(15),
        || {
            let now = serial();
            let first = first.clone();
            async move { (now != first).then_some(now) }
        },
    )
    .await;
    assert_ne!(renewed, first);
}

#[tokio::test]
async fn server_and_agent_export_prometheus_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-metricsAddress", tests::ANY_PORT],
    )
    .await;
    let server_metrics = server.process.metrics_address().await;
    let token = server.join_token(&[]);
    let mut agent = Agent::start_with(
        &server,
        &dir.path().join("agent"),
        Some(&token),
        &["-metricsAddress", tests::ANY_PORT],
    )
    .await;
    let agent_metrics = agent.process.metrics_address().await;
    let agent_id = server.agent_id(&token);
    server.create_entry(
        "spiffe://example.org/app",
        &agent_id,
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    agent.fetch_svid().await;
    // A call without an identity: the entry below matches no process.
    let denied = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .expect("connect")
        .fetch_jwt_svid(
            &["aud"],
            Some(&"spiffe://example.org/other".parse().expect("id")),
        )
        .await;
    assert!(denied.is_err());

    let text = tests::http_get(&server_metrics, "/metrics").await;
    let sample = |name: &str, labels: &[(&str, &str)]| tests::metric(&text, name, labels);
    assert_eq!(
        sample("spire_server_node_attestations_total", &[("outcome", "ok")]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            "spire_server_svids_signed_total",
            &[("kind", "x509"), ("for", "agent")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            "spire_server_svids_signed_total",
            &[("kind", "x509"), ("for", "workload")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(sample("spire_server_entries", &[]), Some(1.0));
    assert_eq!(sample("spire_server_agents", &[]), Some(1.0));

    let text = tests::http_get(&agent_metrics, "/metrics").await;
    let sample = |name: &str, labels: &[(&str, &str)]| tests::metric(&text, name, labels);
    assert!(
        sample(
            "spire_agent_workload_api_calls_total",
            &[("rpc", "FetchX509SVID"), ("code", "OK")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "spire_agent_workload_api_calls_total",
            &[("rpc", "FetchJWTSVID"), ("code", "PermissionDenied")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample("spire_agent_svids_cached", &[]), Some(1.0));
}

/// Two servers of one trust domain on one PostgreSQL database, as SPIRE runs HA: each keeps
/// its own CA key, both CAs are in the shared bundle, and a token or entry created through
/// one server works through the other.
#[tokio::test]
async fn two_servers_share_one_database_each_with_its_own_ca() {
    let db = common_sql::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start(&dir.path().join("a"), TD, &["-dataStore", db.url()]).await;
    let b = Server::start(&dir.path().join("b"), TD, &["-dataStore", db.url()]).await;

    let spiffe_bundle = |server: &Server| -> Vec<String> {
        tests::bundle_cas(&server.cli_ok(&["bundle", "show", "-format", "spiffe"]))
    };
    let from_a = spiffe_bundle(&a);
    assert_eq!(from_a.len(), 2, "both servers' CAs are published");
    assert_ne!(from_a[0], from_a[1], "each server has its own CA key");
    assert_eq!(spiffe_bundle(&b), from_a, "both serve the same bundle");

    // A token made through B attests an agent at A; an entry made through B reaches it.
    let token = b.join_token(&[]);
    let agent = Agent::start(&a, &dir.path().join("agent"), Some(&token)).await;
    b.create_entry(
        "spiffe://example.org/ha",
        &b.agent_id(&token),
        &[&format!("unix:uid:{}", uid())],
        &[],
    );
    let svid = agent.fetch_svid().await;
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/ha");
    // The workload's bundle holds both CAs, so SVIDs from either server verify.
    let bundles = client(&agent)
        .await
        .fetch_x509_bundles()
        .await
        .expect("bundles");
    let td = spiffe::TrustDomain::new(TD).expect("td");
    assert_eq!(bundles.get(&td).expect("bundle").authorities().len(), 2);
}

/// With the server down the agent keeps serving its cached SVIDs, new clients included, and
/// keeps open streams open; once the server is back, new entries reach workloads again.
#[tokio::test]
async fn the_agent_serves_from_cache_while_the_server_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, agent, agent_id) = stack(dir.path()).await;
    let selector = format!("unix:uid:{}", uid());
    server.create_entry("spiffe://example.org/steady", &agent_id, &[&selector], &[]);
    let source = X509Source::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("X509Source");

    server.process.kill();
    // A client that connects only now still gets the cached SVID.
    let svid = client(&agent)
        .await
        .fetch_x509_svid()
        .await
        .expect("cached SVID");
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/steady");
    assert_eq!(
        source.svid().expect("svid").spiffe_id().to_string(),
        "spiffe://example.org/steady"
    );

    server.restart().await;
    server.create_entry(
        "spiffe://example.org/added",
        &agent_id,
        &[&selector],
        &["-hint", "added"],
    );
    let ids = wait_for(
        "the new entry after the restart",
        Duration::from_secs(30),
        || async {
            let svids = client(&agent).await.fetch_all_x509_svids().await.ok()?;
            let mut ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
            ids.sort();
            (ids.len() == 2).then_some(ids)
        },
    )
    .await;
    assert_eq!(
        ids,
        ["spiffe://example.org/added", "spiffe://example.org/steady"]
    );
    // The stream opened before the outage is still live.
    assert!(
        source.is_healthy(),
        "the X509Source's stream survived the outage"
    );
}

/// An agent down for longer than its SVID's lifetime cannot re-authenticate with it: without a
/// token it stops and says it needs a new join token; with one it attests afresh.
#[tokio::test]
async fn an_agent_whose_svid_expired_while_down_asks_for_a_new_join_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &["-agentTTL", "2s"]).await;
    let token = server.join_token(&[]);
    let agent_dir = dir.path().join("agent");
    let mut agent = Agent::start(&server, &agent_dir, Some(&token)).await;
    agent.process.kill();

    // Wait (by the clock, not a fixed sleep) until the stored SVID has expired.
    let pem = std::fs::read(agent.data_dir.join("agent-svid.pem")).expect("stored SVID");
    let der = ::pem::parse(&pem).expect("PEM").into_contents();
    let (_, cert) = X509Certificate::from_der(&der).expect("certificate");
    let not_after = cert.validity().not_after.timestamp();
    wait_for(
        "the stored agent SVID to expire",
        Duration::from_secs(30),
        || async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            (i64::try_from(now).expect("time") > not_after).then_some(())
        },
    )
    .await;

    let bundle = server.write_bundle();
    let mut expired = Agent::spawn(&server, &agent_dir, None, &bundle);
    let status = expired.process.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = expired.process.log();
    assert!(
        log.contains("expired") && log.contains("new join token"),
        "{log}"
    );

    let fresh = server.join_token(&[]);
    let agent = Agent::start(&server, &agent_dir, Some(&fresh)).await;
    assert!(agent.socket.exists());
}

/// SPIRE caps an SVID at its CA's NotAfter (`credtemplate.computeCappedLifetime`) so that no
/// workload holds a certificate its bundle stops vouching for. The CA here lives 3 minutes
/// (from 10 s back) and its successor is prepared at half life, 85 s after the server starts,
/// so while this test runs the bundle holds the one active CA, which expires long before the
/// entry's one-hour TTL.
#[tokio::test]
async fn svids_are_capped_at_the_ca_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        TD,
        &["-caTTL", "3m", "-defaultX509SVIDTTL", "1m"],
    )
    .await;
    let token = server.join_token(&[]);
    let agent = Agent::start(&server, &dir.path().join("agent"), Some(&token)).await;
    let id = "spiffe://example.org/outlives-its-ca";
    let signed_after = unix_now();
    server.create_entry(
        id,
        &server.agent_id(&token),
        &[&format!("unix:uid:{}", uid())],
        &["-x509SVIDTTL", "3600"],
    );
    let svid = agent.fetch_svid().await;
    let bundles = client(&agent)
        .await
        .fetch_x509_bundles()
        .await
        .expect("bundles");
    let td = spiffe::TrustDomain::new(TD).expect("td");
    let bundle = bundles.get(&td).expect("own bundle");
    let cas = bundle.authorities();
    assert_eq!(
        cas.len(),
        1,
        "only the active CA: no successor prepared yet"
    );
    assert_x509_svid_rules(
        &svid_chain(&svid),
        svid.private_key().as_ref(),
        &[cas[0].as_ref()],
        &Expected {
            spiffe_id: id,
            dns: &[],
            lifetime: Lifetime::CappedByCa(3600),
            signed_after,
        },
    );
}

/// `entry create -entryID` stores the entry under the ID given, `entry show -entryID` finds
/// exactly it, and reusing the ID for another entry is refused by name, writing nothing.
#[tokio::test]
async fn entry_create_uses_the_given_entry_id_and_refuses_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), TD, &[]).await;
    let parent = "spiffe://example.org/spire/agent/join_token/x";
    let entry_id = "billing-api.v2_primary";
    // One unrelated entry, so that "found exactly it" is not "found the only one".
    let other = server.create_entry("spiffe://example.org/other", parent, &["unix:uid:2"], &[]);
    let created = server.create_entry(
        "spiffe://example.org/billing",
        parent,
        &["unix:uid:1"],
        &["-entryID", entry_id],
    );
    assert_eq!(created, entry_id, "the entry is stored under the given ID");
    assert_ne!(other, entry_id);

    let show = |id: &str| -> serde_json::Value {
        serde_json::from_str(&server.cli_ok(&["entry", "show", "-entryID", id, "-output", "json"]))
            .expect("JSON")
    };
    let shown = show(entry_id);
    let entries = shown["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{shown}");
    assert_eq!(entries[0]["id"], entry_id);
    assert_eq!(entries[0]["spiffe_id"], "spiffe://example.org/billing");
    assert_eq!(entries[0]["parent_id"], parent);

    // The same ID for an otherwise different entry: refused, and the ID named.
    let out = server.cli(&[
        "entry",
        "create",
        "-entryID",
        entry_id,
        "-spiffeID",
        "spiffe://example.org/intruder",
        "-parentID",
        parent,
        "-selector",
        "unix:uid:3",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a duplicate entry ID must be refused"
    );
    assert!(
        stderr.contains(&format!("an entry with ID {entry_id:?} exists")),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("intruder"),
        "nothing reported as created"
    );

    // Nothing was written: the first entry is unchanged and no third entry exists.
    let shown = show(entry_id);
    assert_eq!(
        shown["entries"][0]["spiffe_id"],
        "spiffe://example.org/billing"
    );
    assert_eq!(shown["entries"][0]["revision_number"], 0);
    assert_eq!(
        shown["entries"][0]["selectors"],
        serde_json::json!([{"type": "unix", "value": "uid:1"}])
    );
    let all = server.cli_ok(&["entry", "show"]);
    assert!(all.starts_with("Found 2 entries"), "{all}");
    assert!(!all.contains("intruder"), "{all}");
    let none = server.cli_ok(&[
        "entry",
        "show",
        "-spiffeID",
        "spiffe://example.org/intruder",
    ]);
    assert!(none.starts_with("Found 0 entries"), "{none}");
}
