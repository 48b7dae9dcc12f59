//! The `x509pop` node attestation messages (`spire_proto::x509pop`): the evidence and the
//! answer an agent sends the identity server, and the signature check on the answer.
//!
//! Input: evidence JSON, then a NUL, then answer JSON.
//!
//! Properties: accepted evidence holds 1 to 5 certificates and round-trips through
//! `Evidence::new`; an accepted answer has a 32-byte nonce; no answer verifies for a challenge
//! it was not made for (the challenge here is fresh, so nothing the fuzzer writes can be a
//! signature over it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spire_proto::x509pop::{Answer, Evidence, MAX_INTERMEDIATES, NONCE_LEN, fingerprint, verify};

fuzz_target!(|data: &[u8]| {
    let (evidence, answer) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let chain = Evidence::parse(evidence);
    if let Ok(chain) = &chain {
        assert!((1..=1 + MAX_INTERMEDIATES).contains(&chain.len()));
        let json = serde_json::to_vec(&Evidence::new(chain)).expect("writes");
        assert_eq!(Evidence::parse(&json).expect("reads back"), *chain);
        assert_eq!(fingerprint(&chain[0]).len(), 40);
    }
    let Ok((_, nonce, signature)) = Answer::parse(answer) else {
        return;
    };
    assert_eq!(nonce.len(), NONCE_LEN);
    if let Ok(chain) = chain {
        let mut challenge = [0u8; NONCE_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge)
            .expect("randomness");
        assert!(verify(&chain[0], &challenge, &nonce, &signature).is_err());
    }
});
