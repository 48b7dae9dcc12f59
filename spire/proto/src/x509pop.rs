//! The `x509pop` node attestation exchange, shared by agent and server: the agent shows a
//! certificate chain, the server answers a random challenge, and the agent proves possession
//! of the leaf's private key by signing the challenge together with a nonce of its own
//! (SPIRE's scheme: the server's nonce then the agent's, signed with ECDSA P-256/SHA-256 or
//! RSA-PSS/SHA-256). The agent ID is `spiffe://<td>/spire/agent/x509pop/<SHA-1 of the leaf
//! DER, hex>`, as SPIRE's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The attestation type name.
pub const ATTESTATION_TYPE: &str = "x509pop";

/// Length of the server's challenge and of the agent's nonce.
pub const NONCE_LEN: usize = 32;

/// Most intermediates accepted between the leaf and the CA, as SPIRE's.
pub const MAX_INTERMEDIATES: usize = 4;

/// Why an exchange message is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct X509PopError(pub String);

fn err(message: impl Into<String>) -> X509PopError {
    X509PopError(message.into())
}

/// First message: the agent's chain, leaf first.
#[derive(Debug, Serialize, Deserialize)]
pub struct Evidence {
    /// DER certificates, base64: the leaf, then intermediates.
    pub certificates: Vec<String>,
}

/// Second message: the answer to the challenge.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub challenge_id: String,
    /// The agent's own nonce, base64.
    pub nonce: String,
    /// Signature over challenge || nonce, base64.
    pub signature: String,
}

impl Evidence {
    /// Evidence for a chain of DER certificates.
    pub fn new(chain: &[Vec<u8>]) -> Evidence {
        Evidence {
            certificates: chain.iter().map(|c| STANDARD.encode(c)).collect(),
        }
    }

    /// Parses the JSON payload into DER certificates (leaf first), bounded.
    pub fn parse(payload: &[u8]) -> Result<Vec<Vec<u8>>, X509PopError> {
        let evidence: Evidence = serde_json::from_slice(payload)
            .map_err(|e| err(format!("x509pop evidence is not valid JSON: {e}")))?;
        if evidence.certificates.is_empty() {
            return Err(err("x509pop evidence holds no certificate"));
        }
        if evidence.certificates.len() > 1 + MAX_INTERMEDIATES {
            return Err(err(format!(
                "x509pop evidence holds more than {MAX_INTERMEDIATES} intermediates"
            )));
        }
        evidence
            .certificates
            .iter()
            .map(|c| {
                STANDARD
                    .decode(c)
                    .map_err(|e| err(format!("x509pop certificate is not base64: {e}")))
            })
            .collect()
    }
}

impl Answer {
    /// Parses the JSON payload: challenge ID, nonce, signature.
    pub fn parse(payload: &[u8]) -> Result<(String, Vec<u8>, Vec<u8>), X509PopError> {
        let answer: Answer = serde_json::from_slice(payload)
            .map_err(|e| err(format!("x509pop answer is not valid JSON: {e}")))?;
        let decode = |what: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| err(format!("x509pop {what} is not base64: {e}")))
        };
        let nonce = decode("nonce", &answer.nonce)?;
        if nonce.len() != NONCE_LEN {
            return Err(err(format!("x509pop nonce must be {NONCE_LEN} bytes")));
        }
        Ok((
            answer.challenge_id,
            nonce,
            decode("signature", &answer.signature)?,
        ))
    }
}

/// Signs `challenge` with the PKCS#8 key (P-256 or RSA) and a fresh nonce; returns the answer
/// payload.
pub fn answer(challenge_id: &str, challenge: &[u8], pkcs8: &[u8]) -> Result<Vec<u8>, X509PopError> {
    let rng = SystemRandom::new();
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&rng, &mut nonce).map_err(|_| err("no randomness"))?;
    let message = [challenge, &nonce].concat();
    let signature = if let Ok(key) =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
    {
        key.sign(&rng, &message)
            .map_err(|_| err("ECDSA signing failed"))?
            .as_ref()
            .to_vec()
    } else if let Ok(key) = RsaKeyPair::from_pkcs8(pkcs8) {
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(&signature::RSA_PSS_SHA256, &rng, &message, &mut sig)
            .map_err(|_| err("RSA signing failed"))?;
        sig
    } else {
        return Err(err(
            "the x509pop private key is neither an ECDSA P-256 nor an RSA PKCS#8 key",
        ));
    };
    serde_json::to_vec(&Answer {
        challenge_id: challenge_id.to_owned(),
        nonce: STANDARD.encode(nonce),
        signature: STANDARD.encode(signature),
    })
    .map_err(|e| err(e.to_string()))
}

/// Checks that `signature` over challenge || nonce verifies with the leaf's public key.
pub fn verify(
    leaf_der: &[u8],
    challenge: &[u8],
    nonce: &[u8],
    signature_bytes: &[u8],
) -> Result<(), X509PopError> {
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| err(format!("bad leaf: {e}")))?;
    let spki = leaf.public_key();
    let raw = spki.subject_public_key.data.as_ref();
    let algorithm: &'static dyn signature::VerificationAlgorithm = match spki.parsed() {
        Ok(PublicKey::EC(_)) => &signature::ECDSA_P256_SHA256_ASN1,
        Ok(PublicKey::RSA(_)) => &signature::RSA_PSS_2048_8192_SHA256,
        _ => return Err(err("the leaf key is neither ECDSA P-256 nor RSA")),
    };
    let message = [challenge, nonce].concat();
    UnparsedPublicKey::new(algorithm, raw)
        .verify(&message, signature_bytes)
        .map_err(|_| err("the x509pop signature does not verify with the leaf's key"))
}

/// SHA-1 of a DER certificate as lowercase hex: the agent ID suffix and the CA fingerprint
/// selector value, as SPIRE's.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_verify_with_the_leaf_and_nothing_else() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec!["node".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let challenge = [7u8; NONCE_LEN];
        let payload = answer("c1", &challenge, &key.serialize_der()).expect("answer");
        let (id, nonce, sig) = Answer::parse(&payload).expect("parse");
        assert_eq!(id, "c1");
        verify(cert.der(), &challenge, &nonce, &sig).expect("verifies");
        assert!(verify(cert.der(), &[8u8; NONCE_LEN], &nonce, &sig).is_err());

        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let forged = answer("c1", &challenge, &other.serialize_der()).expect("answer");
        let (_, nonce, sig) = Answer::parse(&forged).expect("parse");
        assert!(verify(cert.der(), &challenge, &nonce, &sig).is_err());

        let evidence = serde_json::to_vec(&Evidence::new(&[cert.der().to_vec()])).expect("json");
        assert_eq!(
            Evidence::parse(&evidence).expect("parse"),
            vec![cert.der().to_vec()]
        );
        assert!(Evidence::parse(b"{\"certificates\":[]}").is_err());
        assert_eq!(
            fingerprint(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
