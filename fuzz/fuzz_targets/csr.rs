//! CSR signing (`spire_server::ca::Ca::sign_csr`): the PKCS#10 request an agent sends the
//! identity server (`AttestAgent`, `RenewAgent`, `BatchNewX509SVID`), signed by a CA made once
//! in the target's setup (created in a temporary directory, then held in memory).
//!
//! Input: one mode byte, then bytes. Even mode: the bytes are the CSR's DER as sent. Odd mode:
//! the bytes are the CertificationRequestInfo (subject, key, attributes), which the target
//! signs with a fixed P-256 test key (`fuzz/keys/jwt-p256.pk8`) and wraps into a CSR, so the
//! fuzzer reaches every step after the proof of possession.
//!
//! Properties: `sign_csr` returns an error or an SVID for exactly the requested SPIFFE ID
//! whose key is the CSR's and is of the kind the CSR's signature proves possession of (a P-256
//! or P-384 key for ECDSA, RSA of at least 2048 bits, Ed25519); the leaf is signed by the CA,
//! is no CA itself, has the requested ID as its one URI SAN (as `identity::peer` reads it),
//! carries nothing of the CSR's subject, and expires no later than the CA; never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use identity::peer::{serial_number_from_cert, spiffe_id_from_cert};
use libfuzzer_sys::fuzz_target;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use spiffe::{SpiffeId, TrustDomain};
use spire_server::ca::{Authorities, Ca, CaError};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

const KEY: &[u8] = include_bytes!("../keys/jwt-p256.pk8");
const ID: &str = "spiffe://example.org/spire/agent/x509pop/fuzz";
const TTL: Duration = Duration::from_secs(3600);
/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2), DER content bytes.
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

struct Setup {
    ca: std::sync::Arc<Ca>,
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("spike-fuzz-csr-{}", std::process::id()));
        let td = TrustDomain::new("example.org").expect("trust domain");
        let ca = Authorities::load_or_create(&dir, &td, Duration::from_secs(24 * 3600))
            .expect("creates a CA")
            .ca();
        std::fs::remove_dir_all(&dir).expect("removes the CA's directory");
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, KEY, &rng)
            .expect("the test key is a P-256 PKCS#8 key");
        Setup { ca, key, rng }
    })
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// `info` signed with the test key, as a CSR.
fn signed_csr(setup: &Setup, info: &[u8]) -> Vec<u8> {
    let signature = setup.key.sign(&setup.rng, info).expect("signs");
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature.as_ref());
    let algorithm = der(0x30, &der(0x06, ECDSA_SHA256));
    let body = [info, algorithm.as_slice(), der(0x03, &bits).as_slice()].concat();
    der(0x30, &body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let setup = setup();
    let csr = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        signed_csr(setup, rest)
    };
    let id = SpiffeId::new(ID).expect("SPIFFE ID");
    let svid = match setup.ca.sign_csr(&csr, &id, TTL, &[]) {
        Ok(svid) => svid,
        Err(CaError::InvalidCsr(message)) => {
            assert!(!message.is_empty());
            return;
        }
        Err(e) => panic!("a bad CSR is an InvalidCsr, not {e:?}"),
    };

    // The request was a CSR whose signature verifies.
    let (rest, request) = X509CertificationRequest::from_der(&csr).expect("an accepted CSR parses");
    assert!(rest.is_empty());
    request
        .verify_signature()
        .expect("an accepted CSR proves possession");
    let requested = &request.certification_request_info.subject_pki;

    assert_eq!(svid.spiffe_id, id);
    let [leaf] = svid.cert_chain.as_slice() else {
        panic!("a self-signed CA's chain is the leaf alone");
    };
    let (rest, cert) = X509Certificate::from_der(leaf).expect("the leaf parses");
    assert!(rest.is_empty());
    assert_eq!(spiffe_id_from_cert(leaf).expect("the leaf is an SVID"), id);
    assert_eq!(
        serial_number_from_cert(leaf).expect("serial"),
        svid.serial_number
    );

    // The key is the CSR's, of the kind its signature was checked with. Compared by content:
    // x509-parser reads a SubjectPublicKeyInfo under another tag than SEQUENCE, and the
    // certificate carries it re-encoded as DER.
    let issued = cert.public_key();
    assert_eq!(
        (
            &issued.algorithm.algorithm,
            issued.algorithm.parameters.as_ref().map(|p| p.data),
            issued.subject_public_key.data.as_ref(),
        ),
        (
            &requested.algorithm.algorithm,
            requested.algorithm.parameters.as_ref().map(|p| p.data),
            requested.subject_public_key.data.as_ref(),
        ),
        "the SVID is for the CSR's key"
    );
    let signature_alg = request.signature_algorithm.algorithm.to_id_string();
    let key_alg = requested.algorithm.algorithm.to_id_string();
    match requested.parsed() {
        Ok(PublicKey::EC(point)) => {
            assert!(
                signature_alg.starts_with("1.2.840.10045.4.3."),
                "{signature_alg}"
            );
            assert_eq!(key_alg, "1.2.840.10045.2.1");
            assert!(
                matches!(point.key_size(), 256 | 384),
                "{}",
                point.key_size()
            );
        }
        Ok(PublicKey::RSA(rsa)) => {
            assert!(
                signature_alg.starts_with("1.2.840.113549.1.1."),
                "{signature_alg}"
            );
            assert!(rsa.key_size() >= 2048, "{} bits", rsa.key_size());
        }
        Ok(PublicKey::Unknown(_)) if key_alg == "1.3.101.112" => {
            assert_eq!(signature_alg, "1.3.101.112", "Ed25519");
        }
        other => panic!("an SVID for a {key_alg} key ({other:?}), signed {signature_alg}"),
    }
    if mode & 1 == 1 {
        let spki = cert.public_key();
        assert_eq!(
            spki.subject_public_key.data.as_ref(),
            setup.key.public_key().as_ref(),
            "the key that signed"
        );
    }

    // Signed by the CA, not a CA, nothing of the request's subject, within the CA's life.
    let (_, ca) = X509Certificate::from_der(setup.ca.cert_der()).expect("the CA parses");
    cert.verify_signature(Some(ca.public_key()))
        .expect("the CA signed the leaf");
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    let constraints = cert
        .basic_constraints()
        .expect("one basicConstraints")
        .expect("basicConstraints present");
    assert!(constraints.critical && !constraints.value.ca);
    let usage = cert
        .key_usage()
        .expect("one keyUsage")
        .expect("keyUsage present");
    assert!(!usage.value.key_cert_sign() && !usage.value.crl_sign());
    assert!(cert.subject().iter_common_name().next().is_none());
    assert!(cert.validity().not_after <= ca.validity().not_after);
    assert_eq!(svid.expires_at, cert.validity().not_after.timestamp());
});
