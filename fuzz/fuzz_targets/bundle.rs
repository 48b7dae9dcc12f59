//! Trust bundles (`spire_proto::bundle_format`): PEM or SPIFFE JSON, as federation bundle
//! endpoints serve them over the network and `spire-server bundle set` / `spire-agent run
//! -trustBundle` read them from files.
//!
//! Properties:
//! - `parse_bundle` and `parse_x509_authorities` agree on the X.509 authorities, each of
//!   which parses as a certificate;
//! - every JWT authority is a P-256 key the JWT-SVID validator can use, and the JWK Set the
//!   Workload API serves can be written for them;
//! - a bundle that can be written in SPIFFE format reads back equal (sequence number and
//!   refresh hint included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spire_proto::bundle_format::{
    p256_point_from_spki, parse_bundle, parse_x509_authorities, to_jwt_jwks, to_spiffe_json,
};
use x509_parser::prelude::{FromDer, X509Certificate};

fuzz_target!(|data: &[u8]| {
    let authorities = parse_x509_authorities(data);
    let Ok(bundle) = parse_bundle("example.org", data) else {
        return;
    };
    assert_eq!(authorities.as_ref(), Ok(&bundle.x509_authorities));
    assert!(!bundle.x509_authorities.is_empty());
    for der in &bundle.x509_authorities {
        assert!(X509Certificate::from_der(der).is_ok());
    }
    for key in &bundle.jwt_authorities {
        assert!(!key.key_id.is_empty());
        assert!(p256_point_from_spki(&key.public_key).is_ok());
    }
    to_jwt_jwks(&bundle.jwt_authorities).expect("JWT authorities write as a JWK Set");
    let Ok(json) = to_spiffe_json(&bundle) else {
        return;
    };
    let back = parse_bundle("example.org", json.as_bytes()).expect("our own output reads back");
    assert_eq!(back, bundle);
});
