//! SVID signing by the server's CA, in process, against raw ECDSA P-256 signatures.

use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use spire_server::ca::Authorities;

use crate::{Figures, Plan, progress};

pub fn run(plan: Plan, figures: &mut Figures) -> anyhow::Result<()> {
    progress("SVID signing in process...");
    let n = if plan.quick { 300 } else { 3000 };
    let dir = tempfile::tempdir()?;
    let td = spiffe::TrustDomain::new("example.org")?;
    let authorities = Authorities::load_or_create(dir.path(), &td, Duration::from_secs(86_400))?;
    let ca = authorities.ca();
    let id = spiffe::SpiffeId::new("spiffe://example.org/bench")?;
    let (csr, _key) = spire_server::ca::new_csr(Some(&id))?;
    let ttl = Duration::from_secs(3600);
    ca.sign_csr(&csr, &id, ttl, &[])?;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ca.sign_csr(&csr, &id, ttl, &[])?);
    }
    let svids = n as f64 / start.elapsed().as_secs_f64();

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("generating a P-256 key"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("loading the P-256 key"))?;
    // About the size of an SVID's to-be-signed part.
    let message = [0x5au8; 400];
    let start = Instant::now();
    for _ in 0..n {
        let signature = key
            .sign(&rng, &message)
            .map_err(|_| anyhow::anyhow!("signing"))?;
        std::hint::black_box(signature);
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();
    figures.record("svid_sign", svids, raw)
}
