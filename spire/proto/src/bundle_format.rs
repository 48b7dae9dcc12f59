//! Trust bundle file formats: PEM (concatenated `CERTIFICATE` blocks) and the SPIFFE bundle
//! format (a JWK Set, SPIFFE Trust Domain and Bundle standard §4), as `spire-server bundle show`
//! prints them and `spire-agent run -trustBundle` reads them, and the JWT-only JWK Set the
//! Workload API serves (`FetchJWTBundles`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::server::{Bundle, JwtKey};

/// Why a bundle document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFormatError(pub String);

impl std::fmt::Display for BundleFormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BundleFormatError {}

/// The bundle's X.509 authorities as PEM.
pub fn to_pem(bundle: &Bundle) -> String {
    bundle
        .x509_authorities
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
        .collect()
}

/// The bundle in SPIFFE format: `x509-svid` keys carry `x5c` and no `kid` (X509-SVID §6);
/// `jwt-svid` keys carry `kid` (JWT-SVID §6); plus `spiffe_sequence` and `spiffe_refresh_hint`.
pub fn to_spiffe_json(bundle: &Bundle) -> Result<String, BundleFormatError> {
    let mut keys = Vec::new();
    for der in &bundle.x509_authorities {
        let mut jwk = cert_jwk(der)?;
        jwk["use"] = json!("x509-svid");
        jwk["x5c"] = json!([STANDARD.encode(der)]);
        keys.push(jwk);
    }
    for key in &bundle.jwt_authorities {
        let mut jwk = jwt_key_jwk(key)?;
        jwk["use"] = json!("jwt-svid");
        keys.push(jwk);
    }
    let mut doc = json!({ "keys": keys });
    if bundle.refresh_hint > 0 {
        doc["spiffe_refresh_hint"] = json!(bundle.refresh_hint);
    }
    doc["spiffe_sequence"] = json!(bundle.sequence_number);
    serde_json::to_string_pretty(&doc).map_err(|e| BundleFormatError(e.to_string()))
}

/// The JWT authorities of a bundle as the standard JWK Set the Workload API serves in
/// `JWTBundlesResponse`: `{"keys":[…]}` with `kid` on every key and, as SPIRE sends it, no
/// `use`, `spiffe_sequence` or `spiffe_refresh_hint`.
pub fn to_jwt_jwks(keys: &[JwtKey]) -> Result<Vec<u8>, BundleFormatError> {
    let keys = keys
        .iter()
        .map(jwt_key_jwk)
        .collect::<Result<Vec<_>, _>>()?;
    serde_json::to_vec(&json!({ "keys": keys })).map_err(|e| BundleFormatError(e.to_string()))
}

/// A JWT authority as a JWK with its `kid`.
fn jwt_key_jwk(key: &JwtKey) -> Result<Value, BundleFormatError> {
    let mut jwk = ec_jwk(p256_point_from_spki(&key.public_key)?)?;
    jwk["kid"] = json!(key.key_id);
    Ok(jwk)
}

/// The public key of a P-256 certificate as a JWK (`kty`, `crv`, `x`, `y`).
fn cert_jwk(der: &[u8]) -> Result<Value, BundleFormatError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| BundleFormatError(format!("unparsable CA certificate: {e}")))?;
    ec_jwk(cert.public_key().subject_public_key.data.as_ref())
}

/// An uncompressed P-256 point as a JWK (`kty`, `crv`, `x`, `y`).
fn ec_jwk(point: &[u8]) -> Result<Value, BundleFormatError> {
    // An uncompressed P-256 point: 0x04 || X (32 bytes) || Y (32 bytes).
    if point.len() != 65 || point[0] != 4 {
        return Err(BundleFormatError(
            "key is not an uncompressed P-256 point".into(),
        ));
    }
    Ok(json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }))
}

/// DER prefix of a P-256 SubjectPublicKeyInfo (`id-ecPublicKey`, `prime256v1`, a 66-byte BIT
/// STRING); the uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The SubjectPublicKeyInfo DER of an uncompressed P-256 point (as `ring` returns it), the
/// form in which bundles carry JWT authorities.
pub fn spki_from_p256_point(point: &[u8]) -> Vec<u8> {
    [P256_SPKI_PREFIX.as_slice(), point].concat()
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo.
pub fn p256_point_from_spki(spki: &[u8]) -> Result<&[u8], BundleFormatError> {
    match spki.strip_prefix(P256_SPKI_PREFIX.as_slice()) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point),
        _ => Err(BundleFormatError(
            "JWT authority is not an uncompressed P-256 public key".into(),
        )),
    }
}

/// Reads a trust bundle file in either format and returns its X.509 authorities (DER).
pub fn parse_x509_authorities(data: &[u8]) -> Result<Vec<Vec<u8>>, BundleFormatError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| BundleFormatError("bundle is neither PEM nor JSON text".into()))?;
    let certs = if text.trim_start().starts_with('{') {
        parse_spiffe_json(text)?
    } else {
        let blocks =
            pem::parse_many(text).map_err(|e| BundleFormatError(format!("invalid PEM: {e}")))?;
        blocks
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect()
    };
    if certs.is_empty() {
        return Err(BundleFormatError(
            "bundle contains no CA certificate".into(),
        ));
    }
    for der in &certs {
        X509Certificate::from_der(der).map_err(|e| {
            BundleFormatError(format!("bundle holds an unparsable certificate: {e}"))
        })?;
    }
    Ok(certs)
}

/// Reads a bundle of `trust_domain` in SPIFFE format (X.509 and JWT authorities, sequence
/// number, refresh hint) or PEM (X.509 authorities only), as `spire-server bundle set`
/// accepts it. JWT authorities must be P-256 keys with a `kid`, the only kind this project
/// validates tokens with; any other is refused by name rather than silently dropped.
pub fn parse_bundle(trust_domain: &str, data: &[u8]) -> Result<Bundle, BundleFormatError> {
    let x509_authorities = parse_x509_authorities(data)?;
    let text = std::str::from_utf8(data).unwrap_or_default();
    let mut bundle = Bundle {
        trust_domain: trust_domain.to_owned(),
        x509_authorities,
        ..Bundle::default()
    };
    if !text.trim_start().starts_with('{') {
        return Ok(bundle);
    }
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| BundleFormatError(format!("invalid SPIFFE bundle JSON: {e}")))?;
    bundle.sequence_number = doc
        .get("spiffe_sequence")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // A refresh hint of zero or less means none (and is never written back): found by
    // fuzz/bundle, where -300 read back as 0.
    bundle.refresh_hint = doc
        .get("spiffe_refresh_hint")
        .and_then(Value::as_i64)
        .filter(|hint| *hint > 0)
        .unwrap_or(0);
    bundle.jwt_authorities = jwt_authorities(&doc)?;
    Ok(bundle)
}

/// The JWT authorities of a SPIFFE bundle document (keys with `use` `jwt-svid`), as
/// [`parse_bundle`] reads them, without its X.509 part: a JSON document that is not a SPIFFE
/// bundle's shape has none.
pub fn parse_jwt_authorities(data: &[u8]) -> Result<Vec<JwtKey>, BundleFormatError> {
    let doc: Value = serde_json::from_slice(data)
        .map_err(|e| BundleFormatError(format!("invalid SPIFFE bundle JSON: {e}")))?;
    jwt_authorities(&doc)
}

/// The `jwt-svid` keys of a SPIFFE bundle document, each a P-256 key with a `kid`.
fn jwt_authorities(doc: &Value) -> Result<Vec<JwtKey>, BundleFormatError> {
    let mut authorities = Vec::new();
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for key in keys.filter(|k| k.get("use").and_then(Value::as_str) == Some("jwt-svid")) {
        let kid = key
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| BundleFormatError("a jwt-svid key has no \"kid\"".into()))?;
        let coordinate = |name: &str| {
            key.get(name)
                .and_then(Value::as_str)
                .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
                .filter(|c| c.len() == 32)
        };
        let (Some("EC"), Some("P-256"), Some(x), Some(y)) = (
            key.get("kty").and_then(Value::as_str),
            key.get("crv").and_then(Value::as_str),
            coordinate("x"),
            coordinate("y"),
        ) else {
            return Err(BundleFormatError(format!(
                "jwt-svid key {kid:?} is not an EC P-256 key; only ES256 authorities are supported"
            )));
        };
        // RFC 7517 §4.5: distinct keys SHOULD have distinct `kid`s. Two keys under one
        // `kid` are refused: the agent validates with the first, while workloads' SPIFFE
        // libraries (rust-spiffe, go-spiffe) keep the last of the JWT bundle it serves
        // (found writing fuzz/jwks's property).
        if authorities.iter().any(|k: &JwtKey| k.key_id == kid) {
            return Err(BundleFormatError(format!(
                "two jwt-svid keys have the key ID {kid:?}"
            )));
        }
        let point = [&[4u8][..], &x, &y].concat();
        authorities.push(JwtKey {
            key_id: kid.to_owned(),
            public_key: spki_from_p256_point(&point),
            expires_at: 0,
        });
    }
    Ok(authorities)
}

fn parse_spiffe_json(text: &str) -> Result<Vec<Vec<u8>>, BundleFormatError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| BundleFormatError(format!("invalid SPIFFE bundle JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| BundleFormatError("SPIFFE bundle has no \"keys\" array".into()))?;
    let mut out = Vec::new();
    // Per the standard: ignore keys of other uses and keys without x5c; use only x5c[0].
    for key in keys {
        if key.get("use").and_then(Value::as_str) != Some("x509-svid") {
            continue;
        }
        let Some(first) = key
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            continue;
        };
        let b64 = first
            .as_str()
            .ok_or_else(|| BundleFormatError("x5c entry is not a string".into()))?;
        out.push(
            STANDARD
                .decode(b64)
                .map_err(|e| BundleFormatError(format!("x5c: {e}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::x509::SubjectPublicKeyInfo;

    const POINT: [u8; 65] = {
        let mut p = [7u8; 65];
        p[0] = 4;
        p
    };

    #[test]
    fn p256_spki_round_trips_and_is_real_der() {
        let spki = spki_from_p256_point(&POINT);
        let (rest, parsed) = SubjectPublicKeyInfo::from_der(&spki).expect("SPKI DER");
        assert!(rest.is_empty());
        assert_eq!(
            parsed.algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1",
            "id-ecPublicKey"
        );
        assert_eq!(parsed.subject_public_key.data.as_ref(), POINT.as_slice());
        assert_eq!(
            p256_point_from_spki(&spki).expect("point"),
            POINT.as_slice()
        );
        assert!(p256_point_from_spki(&spki[1..]).is_err());
    }

    #[test]
    fn jwt_authorities_with_one_kid_twice_are_refused() {
        let mut other = POINT;
        other[1] = 8;
        let key = |kid: &str, point: &[u8]| JwtKey {
            key_id: kid.into(),
            public_key: spki_from_p256_point(point),
            expires_at: 0,
        };
        let bundle = |keys| Bundle {
            trust_domain: "other.org".into(),
            jwt_authorities: keys,
            ..Bundle::default()
        };
        let two = bundle(vec![key("a", &POINT), key("b", &other)]);
        let json = to_spiffe_json(&two).expect("json");
        assert_eq!(
            parse_jwt_authorities(json.as_bytes()).expect("distinct kids"),
            two.jwt_authorities
        );
        let json = to_spiffe_json(&bundle(vec![key("a", &POINT), key("a", &other)])).expect("json");
        let error = parse_jwt_authorities(json.as_bytes()).expect_err("one kid twice");
        assert!(error.0.contains("\"a\""), "{error}");
    }

    #[test]
    fn spiffe_json_round_trips_through_parse_bundle() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).expect("cert");
        let bundle = Bundle {
            trust_domain: "other.org".into(),
            x509_authorities: vec![ca.cert.der().to_vec()],
            jwt_authorities: vec![JwtKey {
                key_id: "kid1".into(),
                public_key: spki_from_p256_point(&POINT),
                expires_at: 0,
            }],
            sequence_number: 7,
            refresh_hint: 300,
        };
        let json = to_spiffe_json(&bundle).expect("json");
        assert_eq!(
            parse_bundle("other.org", json.as_bytes()).expect("parse"),
            bundle
        );
        let pem = to_pem(&bundle);
        let from_pem = parse_bundle("other.org", pem.as_bytes()).expect("pem");
        assert_eq!(from_pem.x509_authorities, bundle.x509_authorities);
        assert!(from_pem.jwt_authorities.is_empty());

        let negative = json.replace(
            "\"spiffe_refresh_hint\": 300",
            "\"spiffe_refresh_hint\": -300",
        );
        assert_ne!(negative, json);
        let parsed = parse_bundle("other.org", negative.as_bytes()).expect("parse");
        assert_eq!(parsed.refresh_hint, 0, "a negative refresh hint means none");

        let rsa = json.replace("\"EC\"", "\"RSA\"");
        let err = parse_bundle("other.org", rsa.as_bytes()).expect_err("RSA JWT key");
        assert!(err.0.contains("kid1"), "{err}");
    }

    #[test]
    fn spiffe_json_has_jwt_keys_and_jwks_has_only_them() {
        let bundle = Bundle {
            trust_domain: "example.org".into(),
            jwt_authorities: vec![JwtKey {
                key_id: "kid1".into(),
                public_key: spki_from_p256_point(&POINT),
                expires_at: 0,
            }],
            sequence_number: 3,
            ..Default::default()
        };
        let doc: Value =
            serde_json::from_str(&to_spiffe_json(&bundle).expect("json")).expect("parse");
        let key = &doc["keys"][0];
        assert_eq!(key["use"], "jwt-svid");
        assert_eq!(key["kid"], "kid1");
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(doc["spiffe_sequence"], 3);

        let jwks: Value =
            serde_json::from_slice(&to_jwt_jwks(&bundle.jwt_authorities).expect("jwks"))
                .expect("parse");
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], "kid1");
        assert!(key.get("use").is_none(), "{jwks}");
        assert!(jwks.get("spiffe_sequence").is_none(), "{jwks}");
    }
}
