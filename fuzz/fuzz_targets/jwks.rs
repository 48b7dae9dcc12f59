//! JWK Sets. Our side: the JWT authorities of a SPIFFE bundle
//! (`spire_proto::bundle_format::parse_jwt_authorities`, the part of `parse_bundle` that reads
//! federation bundles from the network and bundle files), without the X.509 part the `bundle`
//! target needs a certificate to pass. The workload's side: the JWT bundle the agent serves on
//! `FetchJWTBundles` (`to_jwt_jwks`) as workloads read it with the `spiffe` crate
//! (`JwtBundle::from_jwt_authorities`), which also reads the raw input here.
//!
//! Properties:
//! - every accepted authority has a non-empty `kid` and is a P-256 key;
//! - the JWK Set the agent serves for them is read by the `spiffe` crate with exactly those
//!   key IDs, each to a JWK of the same point: a workload validates a token with the key the
//!   server accepted for its `kid`, never another;
//! - written back as a SPIFFE bundle they read back equal;
//! - the `spiffe` crate's parser returns a bundle or an error on any input.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spiffe::{JwtBundle, TrustDomain};
use spire_proto::bundle_format::{
    p256_point_from_spki, parse_jwt_authorities, to_jwt_jwks, to_spiffe_json,
};
use spire_proto::server::Bundle;

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::new("example.org").expect("trust domain");
    let _ = JwtBundle::from_jwt_authorities(td.clone(), data);
    let Ok(keys) = parse_jwt_authorities(data) else {
        return;
    };
    for key in &keys {
        assert!(!key.key_id.is_empty());
        p256_point_from_spki(&key.public_key).expect("a P-256 key");
    }

    let served = to_jwt_jwks(&keys).expect("the agent can serve every accepted key");
    let bundle = JwtBundle::from_jwt_authorities(td, &served).expect("workloads read it");
    let mut seen: Vec<&str> = bundle.jwt_authorities().map(|a| a.key_id()).collect();
    seen.sort_unstable();
    let mut ours: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    ours.sort_unstable();
    ours.dedup();
    assert_eq!(seen, ours, "the workload sees the same key IDs");
    for key in &keys {
        let authority = bundle
            .find_jwt_authority(&key.key_id)
            .expect("found by kid");
        let jwk: Value = serde_json::from_slice(authority.jwk_json()).expect("a JWK");
        let coordinate = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(jwk[name].as_str().expect("a coordinate"))
                .expect("base64url")
        };
        let point = [&[4u8][..], &coordinate("x"), &coordinate("y")].concat();
        assert_eq!(
            point,
            p256_point_from_spki(&key.public_key).expect("P-256"),
            "kid {:?}: the workload validates with another key than the server accepted",
            key.key_id
        );
    }

    let spiffe = to_spiffe_json(&Bundle {
        trust_domain: "example.org".into(),
        jwt_authorities: keys.clone(),
        ..Bundle::default()
    })
    .expect("writes as a SPIFFE bundle");
    assert_eq!(
        parse_jwt_authorities(spiffe.as_bytes()).expect("reads back"),
        keys
    );
});
