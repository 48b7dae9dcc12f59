//! Unit tests for the CA: every certificate produced is parsed back with x509-parser and checked
//! against the X509-SVID rules, and SVIDs are fed to rust-spiffe's own validator.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER, OID_X509_SERIALNUMBER,
};
use x509_parser::prelude::FromDer;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn td() -> TrustDomain {
    TrustDomain::new("example.org").expect("trust domain")
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).expect("spiffe id")
}

/// The current CA of a data directory, as the server loads it.
fn load_or_create(dir: &Path, td: &TrustDomain, ttl: Duration) -> Result<Arc<Ca>, CaError> {
    Authorities::load_or_create(dir, td, ttl).map(|a| a.ca())
}

fn new_ca(dir: &Path) -> Arc<Ca> {
    load_or_create(dir, &td(), DEFAULT_CA_TTL).expect("create CA")
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("parse certificate");
    assert!(rest.is_empty(), "trailing bytes after certificate");
    cert
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn uri_sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
    uri_sans(cert).expect("SANs parse")
}

fn dns_sans_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(san) = cert.subject_alternative_name().expect("SAN parses") {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                out.push((*d).to_string());
            }
        }
    }
    out
}

fn ski_of(cert: &X509Certificate<'_>) -> Vec<u8> {
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .expect("unique SKI")
        .expect("SKI present");
    assert!(!ext.critical, "SKI must not be critical");
    match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
        other => panic!("bad SKI: {other:?}"),
    }
}

fn aki_of(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .expect("unique AKI")?;
    match ext.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => Some(
            a.key_identifier
                .as_ref()
                .expect("AKI keyIdentifier")
                .0
                .to_vec(),
        ),
        other => panic!("bad AKI: {other:?}"),
    }
}

/// Hex of the DER serial without leading zero bytes, as `SignedSvid::serial_number` formats it.
fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let s = format!("{:x}", cert.tbs_certificate.serial);
    s.trim_start_matches('0').to_string()
}

fn assert_positive_128_bit_serial(cert: &X509Certificate<'_>) {
    let raw = cert.raw_serial();
    assert!(
        !raw.is_empty() && raw.len() <= 17,
        "serial length {}",
        raw.len()
    );
    assert_eq!(raw[0] & 0x80, 0, "serial must be a positive DER INTEGER");
    if raw.len() == 17 {
        assert_eq!(raw[0], 0, "17-byte serial must only be a sign-padding zero");
    }
    assert!(raw.iter().any(|b| *b != 0), "serial must not be zero");
    // 16 random bytes: a value below 2^64 would mean the randomness was truncated.
    assert!(
        cert.tbs_certificate.serial.bits() > 64,
        "serial is not 128-bit random"
    );
}

/// Asserts every X509-SVID leaf rule and returns the parsed leaf.
fn assert_leaf_svid<'a>(ca: &Ca, der: &'a [u8], spiffe_id: &SpiffeId) -> X509Certificate<'a> {
    let ca_cert = parse(ca.cert_der());
    let leaf = parse(der);

    assert_eq!(leaf.version(), x509_parser::x509::X509Version::V3);
    assert_eq!(
        uri_sans_of(&leaf),
        vec![spiffe_id.to_string()],
        "exactly one URI SAN"
    );

    let bc = leaf
        .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
        .expect("unique basicConstraints")
        .expect("basicConstraints present");
    assert!(bc.critical, "basicConstraints must be critical");
    let bc = leaf.basic_constraints().expect("bc").expect("bc");
    assert!(!bc.value.ca, "leaf must not be a CA");
    assert!(bc.value.path_len_constraint.is_none());

    let ku_ext = leaf
        .get_extension_unique(&OID_X509_EXT_KEY_USAGE)
        .expect("unique keyUsage")
        .expect("keyUsage present");
    assert!(ku_ext.critical, "keyUsage must be critical");
    let ku = leaf.key_usage().expect("ku").expect("ku").value;
    assert!(ku.digital_signature());
    assert!(ku.key_encipherment());
    assert!(ku.key_agreement());
    assert!(!ku.key_cert_sign(), "leaf must not have keyCertSign");
    assert!(!ku.crl_sign(), "leaf must not have cRLSign");

    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("eku present");
    assert!(eku.value.server_auth && eku.value.client_auth);

    assert_positive_128_bit_serial(&leaf);

    // Chains to the CA: issuer name is byte-identical, AKI = CA SKI, signature verifies.
    assert_eq!(
        leaf.tbs_certificate.issuer.as_raw(),
        ca_cert.tbs_certificate.subject.as_raw()
    );
    assert_eq!(aki_of(&leaf), Some(ski_of(&ca_cert)));
    assert_ne!(ski_of(&leaf), ski_of(&ca_cert));
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("leaf signature verifies with the CA key");

    // Subject C=US, O=SPIRE.
    let subject = leaf.subject();
    let c: Vec<_> = subject
        .iter_country()
        .map(|a| a.as_str().expect("C"))
        .collect();
    let o: Vec<_> = subject
        .iter_organization()
        .map(|a| a.as_str().expect("O"))
        .collect();
    assert_eq!(c, ["US"]);
    assert_eq!(o, ["SPIRE"]);

    let nb = leaf.validity().not_before.timestamp();
    let now = unix_now();
    assert!(
        (now - 10 - 3..=now - 10).contains(&nb),
        "NotBefore {nb} should be about now-10s ({now})"
    );
    assert!(leaf.validity().not_after.timestamp() <= ca.not_after());
    leaf
}

#[test]
fn ca_certificate_has_spiffe_ca_properties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = load_or_create(dir.path(), &td(), 2 * HOUR).expect("create CA");
    let now = unix_now();
    let cert = parse(ca.cert_der());

    assert_eq!(ca.trust_domain(), &td());
    assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
    assert_eq!(
        cert.tbs_certificate.issuer.as_raw(),
        cert.tbs_certificate.subject.as_raw()
    );
    cert.verify_signature(None)
        .expect("self-signature verifies");

    // ECDSA P-256 key.
    match cert.public_key().parsed().expect("public key") {
        x509_parser::public_key::PublicKey::EC(p) => assert_eq!(p.key_size(), 256),
        other => panic!("unexpected key {other:?}"),
    }

    // Subject C=US, O=SPIFFE, serialNumber=<serial>.
    let subject = cert.subject();
    let c: Vec<_> = subject
        .iter_country()
        .map(|a| a.as_str().expect("C"))
        .collect();
    let o: Vec<_> = subject
        .iter_organization()
        .map(|a| a.as_str().expect("O"))
        .collect();
    let sn: Vec<_> = subject
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .map(|a| a.as_str().expect("serialNumber").to_string())
        .collect();
    assert_eq!(c, ["US"]);
    assert_eq!(o, ["SPIFFE"]);
    assert_eq!(sn, [cert.tbs_certificate.serial.to_string()]);
    assert_eq!(subject.iter_common_name().count(), 0);

    assert_eq!(uri_sans_of(&cert), vec!["spiffe://example.org".to_string()]);

    let bc_ext = cert
        .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
        .expect("unique")
        .expect("basicConstraints present");
    assert!(bc_ext.critical, "basicConstraints must be critical");
    let bc = cert.basic_constraints().expect("bc").expect("bc").value;
    assert!(bc.ca);
    assert!(bc.path_len_constraint.is_none());

    let ku_ext = cert
        .get_extension_unique(&OID_X509_EXT_KEY_USAGE)
        .expect("unique")
        .expect("keyUsage present");
    assert!(ku_ext.critical, "keyUsage must be critical");
    let ku = cert.key_usage().expect("ku").expect("ku").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature() && !ku.key_encipherment());

    assert_eq!(ski_of(&cert).len(), 20);
    assert_positive_128_bit_serial(&cert);

    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert!(
        (now - 13..=now - 10).contains(&nb),
        "NotBefore {nb} vs now {now}"
    );
    assert!(
        (now + 7200 - 3..=now + 7200).contains(&na),
        "NotAfter {na} vs now {now}"
    );
    assert_eq!(ca.not_after(), na);

    // rust-spiffe accepts it as a bundle authority.
    spiffe::X509Bundle::parse_from_der(td(), ca.cert_der()).expect("spiffe accepts CA");
}

#[test]
fn leaf_from_csr_is_a_valid_x509_svid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let spiffe_id = id("spiffe://example.org/ns/prod/sa/api");
    let (csr, key) = new_csr(None).expect("csr");
    let dns = vec!["api.example.org".to_string(), "api.internal".to_string()];

    let svid = ca.sign_csr(&csr, &spiffe_id, HOUR, &dns).expect("sign");
    assert_eq!(svid.spiffe_id, spiffe_id);
    assert_eq!(
        svid.cert_chain.len(),
        1,
        "self-signed CA: chain is just the leaf"
    );

    let leaf = assert_leaf_svid(&ca, &svid.cert_chain[0], &spiffe_id);
    assert_eq!(dns_sans_of(&leaf), dns);
    let cn: Vec<_> = leaf
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().expect("CN"))
        .collect();
    assert_eq!(cn, ["api.example.org"], "CN is the first DNS name");

    assert_eq!(svid.serial_number, serial_hex(&leaf));
    assert_eq!(svid.expires_at, leaf.validity().not_after.timestamp());
    let now = unix_now();
    assert!((now + 3600 - 3..=now + 3600).contains(&svid.expires_at));

    // The certificate carries the CSR's public key, so the agent's key matches it, and
    // rust-spiffe accepts the pair as an X509-SVID.
    let parsed = spiffe::X509Svid::parse_from_der(&svid.cert_chain[0], &key).expect("spiffe");
    assert_eq!(parsed.spiffe_id(), &spiffe_id);
}

#[test]
fn csr_subject_and_sans_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let (csr, _key) = new_csr(Some(&id("spiffe://evil.org/admin"))).expect("csr");
    let spiffe_id = id("spiffe://example.org/agent/node1");
    let svid = ca.sign_csr(&csr, &spiffe_id, HOUR, &[]).expect("sign");
    let leaf = assert_leaf_svid(&ca, &svid.cert_chain[0], &spiffe_id);
    assert!(dns_sans_of(&leaf).is_empty());
    assert_eq!(
        leaf.subject().iter_common_name().count(),
        0,
        "no CN without DNS names"
    );
}

#[test]
fn csr_with_extensions_rcgen_would_refuse_is_accepted() {
    // A CSR asking for CA powers and carrying an unknown extension: the request is only a
    // proof of possession of the key, so none of it matters (rcgen's own CSR parser would
    // reject the unknown extension, which is why the CSR is parsed with x509-parser).
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let key = rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).expect("p");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        &[1, 2, 3, 4],
        vec![0x0c, 0x02, b'h', b'i'],
    )];
    let csr = params.serialize_request(&key).expect("csr");
    let spiffe_id = id("spiffe://example.org/w");
    let svid = ca.sign_csr(csr.der(), &spiffe_id, HOUR, &[]).expect("sign");
    let leaf = assert_leaf_svid(&ca, &svid.cert_chain[0], &spiffe_id);
    assert!(dns_sans_of(&leaf).is_empty());
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
}

/// A 1024-bit RSA CSR made with `openssl req -newkey rsa:1024`.
const RSA_1024_CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBTTCBtwIBADAOMQwwCgYDVQQDDANmb28wgZ8wDQYJKoZIhvcNAQEBBQADgY0A
MIGJAoGBAJdBZC622GS8AgxTTtzQRtq0XR9PshncMjkVgu+Xt8IoHxKjOpW75EX5
ePXigOizxcwh/B7X1RbbamgKSaZmvjU9UpaCNU+gjB8knoCVuLkDeGOvX+N9ffpP
aTE6vwzWWb1NVlH2NJuKDppC9blNX7UJjHUXj3IIAaYbRqk30xI5AgMBAAGgADAN
BgkqhkiG9w0BAQsFAAOBgQACurc6Dbt1Yp4xRDo9r0c0wCK4+DM8ECO//YUqsUrO
P+iiZzb+S/aTt8o846ZWCdj1Z0irV9Lq0aXYx5MQMZaUIewX5Q1ndCTrG7jbyW9g
rGUoN9uTIQu5GTxA31otz9V171C0p3O1UVgVHQfZSj8AHLRD3ZAjwPClYz/ubY/V
2w==
-----END CERTIFICATE REQUEST-----
";

#[test]
fn small_rsa_csr_is_rejected_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let csr = pem::parse(RSA_1024_CSR).expect("pem").into_contents();
    let err = ca
        .sign_csr(&csr, &id("spiffe://example.org/w"), HOUR, &[])
        .expect_err("1024-bit RSA");
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    assert!(err.to_string().contains("too small"), "{err}");
}

/// DER: `tag`, its length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[test]
fn a_csr_whose_key_claims_another_algorithm_than_its_signature_is_refused() {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    // An Ed25519 public key labelled id-ecPublicKey on prime256v1, signed with Ed25519.
    let ec_public_key = [
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
    ]
    .concat();
    let bits = [&[0u8][..], key.public_key().as_ref()].concat();
    let spki = der(
        0x30,
        &[der(0x30, &ec_public_key), der(0x03, &bits)].concat(),
    );
    let info = der(
        0x30,
        &[der(0x02, &[0]), der(0x30, &[]), spki, der(0xa0, &[])].concat(),
    );
    let ed25519 = der(0x30, &der(0x06, &[0x2b, 0x65, 0x70]));
    let signature = [&[0u8][..], key.sign(&info).as_ref()].concat();
    let csr = der(0x30, &[info, ed25519, der(0x03, &signature)].concat());

    let err = ca
        .sign_csr(&csr, &id("spiffe://example.org/w"), HOUR, &[])
        .expect_err("a key that is not what it claims");
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn new_csr_carries_the_requested_id_and_verifies() {
    let spiffe_id = id("spiffe://example.org/agent/x");
    let (csr, key) = new_csr(Some(&spiffe_id)).expect("csr");
    let (_, req) = X509CertificationRequest::from_der(&csr).expect("parse csr");
    req.verify_signature().expect("csr signature");
    let mut uris = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                if let GeneralName::URI(u) = n {
                    uris.push((*u).to_string());
                }
            }
        }
    }
    assert_eq!(uris, [spiffe_id.to_string()]);
    let kp = rcgen::KeyPair::try_from(key.as_slice()).expect("pkcs8");
    assert_eq!(kp.algorithm(), &PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        req.certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .as_ref(),
        kp.public_key_raw()
    );
}

#[test]
fn leaf_not_after_is_capped_by_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = load_or_create(dir.path(), &td(), HOUR).expect("create CA");
    let spiffe_id = id("spiffe://example.org/workload");
    let minted = ca.mint(&spiffe_id, 10 * HOUR, &[]).expect("mint");
    let leaf = assert_leaf_svid(&ca, &minted.svid.cert_chain[0], &spiffe_id);
    assert_eq!(leaf.validity().not_after.timestamp(), ca.not_after());
    assert_eq!(minted.svid.expires_at, ca.not_after());
}

#[test]
fn serials_are_random() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let spiffe_id = id("spiffe://example.org/w");
    let a = ca.mint(&spiffe_id, HOUR, &[]).expect("mint");
    let b = ca.mint(&spiffe_id, HOUR, &[]).expect("mint");
    assert_ne!(a.svid.serial_number, b.svid.serial_number);
    assert!(a.svid.serial_number.len() > 16);
}

#[test]
fn minted_key_matches_the_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let spiffe_id = id("spiffe://example.org/spire/server");
    let dns = vec!["spire-server.example.org".to_string()];
    let minted = ca.mint(&spiffe_id, HOUR, &dns).expect("mint");
    let leaf = assert_leaf_svid(&ca, &minted.svid.cert_chain[0], &spiffe_id);
    assert_eq!(dns_sans_of(&leaf), dns);

    let kp = rcgen::KeyPair::try_from(minted.private_key_pkcs8.as_slice()).expect("pkcs8");
    assert_eq!(kp.algorithm(), &PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        kp.public_key_raw()
    );
    ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &minted.private_key_pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .expect("ring parses the PKCS#8 key");

    spiffe::X509Svid::parse_from_der(&minted.svid.cert_chain[0], &minted.private_key_pkcs8)
        .expect("rust-spiffe accepts the minted SVID");
    let dbg = format!("{minted:?}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn csr_with_bad_signature_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let (mut csr, _key) = new_csr(None).expect("csr");
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    let err = ca
        .sign_csr(&csr, &id("spiffe://example.org/w"), HOUR, &[])
        .expect_err("tampered CSR must be rejected");
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
    assert!(err.to_string().contains("signature"), "{err}");

    let err = ca
        .sign_csr(b"not a csr", &id("spiffe://example.org/w"), HOUR, &[])
        .expect_err("garbage must be rejected");
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
}

#[test]
fn other_trust_domain_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let (csr, _key) = new_csr(None).expect("csr");
    let foreign = id("spiffe://other.org/w");
    let err = ca
        .sign_csr(&csr, &foreign, HOUR, &[])
        .expect_err("foreign TD");
    assert!(matches!(err, CaError::WrongTrustDomain { .. }), "{err}");
    assert!(err.to_string().contains("other.org"), "{err}");
    let err = ca.mint(&foreign, HOUR, &[]).expect_err("foreign TD");
    assert!(matches!(err, CaError::WrongTrustDomain { .. }), "{err}");
}

#[test]
fn root_id_is_rejected_for_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let (csr, _key) = new_csr(None).expect("csr");
    let root = id("spiffe://example.org");
    let err = ca.sign_csr(&csr, &root, HOUR, &[]).expect_err("root id");
    assert!(matches!(err, CaError::InvalidSpiffeId(_)), "{err}");
    let err = ca.mint(&root, HOUR, &[]).expect_err("root id");
    assert!(matches!(err, CaError::InvalidSpiffeId(_)), "{err}");
}

#[test]
fn bad_ttl_and_dns_names_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let w = id("spiffe://example.org/w");
    let err = ca.mint(&w, Duration::ZERO, &[]).expect_err("zero ttl");
    assert!(matches!(err, CaError::InvalidTtl(_)), "{err}");
    for bad in ["", "bad name", "ünicode.example", "a/b"] {
        let err = ca.mint(&w, HOUR, &[bad.to_string()]).expect_err(bad);
        assert!(matches!(err, CaError::InvalidDnsName(_)), "{bad:?}: {err}");
    }
    let err =
        load_or_create(&dir.path().join("x"), &td(), Duration::ZERO).expect_err("zero CA ttl");
    assert!(matches!(err, CaError::InvalidTtl(_)), "{err}");
}

#[test]
fn load_or_create_reuses_the_ca_and_protects_the_key() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("data").join("server");
    let first = load_or_create(&dir, &td(), DEFAULT_CA_TTL).expect("create");
    let second = load_or_create(&dir, &td(), DEFAULT_CA_TTL).expect("load");
    assert_eq!(first.cert_der(), second.cert_der());
    assert_eq!(first.not_after(), second.not_after());

    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        4,
        "CA and JWT key files, no temp files left behind: {names:?}"
    );

    // The reloaded CA signs leaves that chain to the same certificate.
    let spiffe_id = id("spiffe://example.org/w");
    let minted = second.mint(&spiffe_id, HOUR, &[]).expect("mint");
    let leaf = parse(&minted.svid.cert_chain[0]);
    leaf.verify_signature(Some(parse(first.cert_der()).public_key()))
        .expect("verifies with the original CA");
    assert_leaf_svid(&second, &minted.svid.cert_chain[0], &spiffe_id);
}

#[test]
fn stored_ca_for_another_trust_domain_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    new_ca(dir.path());
    let other = TrustDomain::new("other.org").expect("td");
    let err = load_or_create(dir.path(), &other, DEFAULT_CA_TTL).expect_err("mismatch");
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("example.org") && msg.contains("other.org"),
        "{msg}"
    );
}

#[test]
fn expired_ca_refuses_to_sign() {
    let past = now() - Duration::from_secs(2 * 3600);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keys::disk::DiskKeyManager::new(dir.path())
        .generate("k")
        .expect("key");
    let ca = Ca::generate(&td(), key, HOUR, past, None).expect("generate");
    let err = ca
        .mint(&id("spiffe://example.org/w"), HOUR, &[])
        .expect_err("expired CA");
    assert!(matches!(err, CaError::CaExpired { .. }), "{err}");
}

#[test]
fn incomplete_or_mismatched_ca_files_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    new_ca(dir.path());
    let cert = dir.path().join("ca-cert.pem");
    let key = dir.path().join("ca-key.pem");

    // Key from another CA.
    let other = tempfile::tempdir().expect("tempdir");
    new_ca(other.path());
    std::fs::copy(other.path().join("ca-key.pem"), &key).expect("copy key");
    let err = load_or_create(dir.path(), &td(), DEFAULT_CA_TTL).expect_err("mismatch");
    assert!(matches!(err, CaError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");

    // Key missing: must not silently create a new CA over the old certificate.
    std::fs::remove_file(&key).expect("rm key");
    let err = load_or_create(dir.path(), &td(), DEFAULT_CA_TTL).expect_err("no key");
    assert!(matches!(err, CaError::Corrupt(_)), "{err}");
    assert!(cert.exists());

    // Garbage certificate.
    std::fs::copy(other.path().join("ca-key.pem"), &key).expect("copy key");
    std::fs::write(&cert, "not pem").expect("write");
    let err = load_or_create(dir.path(), &td(), DEFAULT_CA_TTL).expect_err("garbage");
    assert!(matches!(err, CaError::Corrupt(_)), "{err}");

    // Certificate missing.
    std::fs::remove_file(&cert).expect("rm cert");
    let err = load_or_create(dir.path(), &td(), DEFAULT_CA_TTL).expect_err("no cert");
    assert!(matches!(err, CaError::Corrupt(_)), "{err}");
}

#[test]
fn debug_does_not_print_key_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(dir.path());
    let dbg = format!("{ca:?}");
    assert!(dbg.contains("example.org"), "{dbg}");
    assert!(dbg.contains("not_after"), "{dbg}");
    let pem = std::fs::read_to_string(dir.path().join("ca-key.pem")).expect("key file");
    let der = pem::parse(pem).expect("pem").into_contents();
    let key_hex = hex::encode(&der);
    assert!(!dbg.contains(&key_hex[key_hex.len() - 32..]), "{dbg}");
    assert!(dbg.len() < 200, "{dbg}");
}
