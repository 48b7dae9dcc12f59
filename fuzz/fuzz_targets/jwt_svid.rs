//! JWT-SVID validation (`spire_proto::jwt_svid::validate`), which the agent's Workload API
//! (`ValidateJWTSVID`) and the identity server apply to tokens a workload hands them.
//!
//! Input: up to four lines: audience, now (Unix seconds), header JSON, claims JSON. The
//! header and claims are signed with a fixed test key (`fuzz/keys/jwt-p256.pk8`, key ID
//! `k1`), so the fuzzer reaches every check after the signature.
//!
//! Properties:
//! - an accepted token has `alg` ES256, a `kid`, `sub` equal to the returned SPIFFE ID,
//!   `exp` after now, `nbf` (if any) not after now, and the audience among `aud`;
//! - the same token with its signature altered, or with no key for its `kid`, is refused;
//! - the input itself taken as a token is refused: nothing unsigned validates.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value};
use spire_proto::bundle_format::spki_from_p256_point;
use spire_proto::jwt_svid::{JwtSvidError, validate};

const KEY: &[u8] = include_bytes!("../keys/jwt-p256.pk8");

fuzz_target!(|data: &str| {
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, KEY, &rng)
        .expect("the test key is a P-256 PKCS#8 key");
    let spki = spki_from_p256_point(key.public_key().as_ref());
    let keys = |_: &spiffe::TrustDomain, kid: &str| (kid == "k1").then(|| spki.clone());

    let mut lines = data.splitn(4, '\n');
    let audience = lines.next().unwrap_or_default();
    let now = lines
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(1_000);
    let header = lines.next().unwrap_or_default();
    let claims = lines.next().unwrap_or_default();

    assert!(
        validate(data, audience, now, keys).is_err(),
        "an unsigned input validated"
    );

    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = key.sign(&rng, input.as_bytes()).expect("signs");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    let Ok(valid) = validate(&token, audience, now, keys) else {
        return;
    };

    let header: Map<String, Value> = serde_json::from_str(header).expect("accepted header");
    assert_eq!(header.get("alg"), Some(&Value::from("ES256")));
    assert_eq!(header.get("kid"), Some(&Value::from("k1")));
    let claims: Map<String, Value> = serde_json::from_str(claims).expect("accepted claims");
    assert_eq!(
        claims.get("sub"),
        Some(&Value::from(valid.spiffe_id.to_string()))
    );
    // NumericDate in whole seconds, as the validator reads it.
    let date = |name: &str| {
        let n = claims.get(name)?;
        n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
    };
    assert!(date("exp").is_some_and(|exp| exp > now), "expired");
    assert!(date("nbf").is_none_or(|nbf| nbf <= now), "not yet valid");
    let audiences = valid.claims["aud"].as_array().expect("aud is an array");
    assert!(audiences.iter().any(|a| a.as_str() == Some(audience)));

    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    assert!(matches!(
        validate(&forged, audience, now, keys),
        Err(JwtSvidError::BadSignature | JwtSvidError::Malformed(_))
    ));
    assert!(matches!(
        validate(&token, audience, now, |_, _| None),
        Err(JwtSvidError::UnknownKey { .. })
    ));
});
