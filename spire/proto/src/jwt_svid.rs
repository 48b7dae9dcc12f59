//! JWT-SVIDs (SPIFFE JWT-SVID standard) as the server signs them and the agent validates them:
//! ES256 compact JWS with the header `{"alg":"ES256","kid":…,"typ":"JWT"}` and the claims
//! `sub`, `aud` (always an array), `exp` and `iat`.
//!
//! Written over `ring` rather than a JWT crate: `jsonwebtoken` (10+) only offers aws-lc-rs or
//! RustCrypto backends, while this workspace signs with `ring`; and a JWT-SVID is a narrow
//! profile (one algorithm, three header fields, three segments) whose validation rules we want
//! spelled out exactly as the standard and SPIRE have them, not inherited from a general
//! library's defaults.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, EcdsaKeyPair};
use serde_json::{Map, Value, json};
use spiffe::{SpiffeId, TrustDomain};

use crate::bundle_format;

/// The only signing algorithm we issue and accept.
pub const ALGORITHM: &str = "ES256";
/// Most audiences one JWT-SVID may name.
pub const MAX_AUDIENCES: usize = 32;
/// Longest audience value, in bytes.
pub const MAX_AUDIENCE_LEN: usize = 512;
/// Longest token we try to parse; real JWT-SVIDs are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a JWT-SVID could not be signed or did not validate. Messages are shown to callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    /// The audience list breaks the bounds above.
    #[error("invalid audience: {0}")]
    InvalidAudience(String),
    /// The token is not three base64url segments of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header has another algorithm (including `none`).
    #[error("unsupported token signature algorithm {0:?}; only ES256 is allowed")]
    UnsupportedAlgorithm(String),
    /// The header has no `kid`.
    #[error("token header missing key id")]
    MissingKeyId,
    /// A required claim is missing or has the wrong type.
    #[error("invalid token claims: {0}")]
    InvalidClaims(String),
    /// No JWT authority of the subject's trust domain has this key ID.
    #[error("no JWT authority with key id {key_id:?} in the bundle of trust domain {trust_domain}")]
    UnknownKey {
        /// The token's `kid`.
        key_id: String,
        /// The trust domain of the token's `sub`.
        trust_domain: String,
    },
    /// The signature does not verify with the authority's key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// The expected audience is not among the token's.
    #[error("expected audience {expected:?} is not among the token's audiences {actual:?}")]
    WrongAudience {
        /// The audience the validator asked for.
        expected: String,
        /// The token's `aud`.
        actual: Vec<String>,
    },
    /// The signing key could not sign.
    #[error("signing failed")]
    Signing,
}

/// The registered claims of a JWT-SVID we issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The SPIFFE ID (`sub`).
    pub subject: SpiffeId,
    /// `aud`, always written as an array.
    pub audience: Vec<String>,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// A token that passed [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The SPIFFE ID in `sub`.
    pub spiffe_id: SpiffeId,
    /// Every claim, with `aud` normalised to an array.
    pub claims: Map<String, Value>,
}

/// Checks an audience list: 1 to [`MAX_AUDIENCES`] values, each non-empty and at most
/// [`MAX_AUDIENCE_LEN`] bytes.
pub fn check_audience(audience: &[String]) -> Result<(), JwtSvidError> {
    if audience.is_empty() {
        return Err(JwtSvidError::InvalidAudience(
            "audience must be specified".into(),
        ));
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(JwtSvidError::InvalidAudience(format!(
            "at most {MAX_AUDIENCES} audiences are allowed, got {}",
            audience.len()
        )));
    }
    for aud in audience {
        if aud.is_empty() {
            return Err(JwtSvidError::InvalidAudience(
                "an audience value is empty".into(),
            ));
        }
        if aud.len() > MAX_AUDIENCE_LEN {
            return Err(JwtSvidError::InvalidAudience(format!(
                "an audience value is {} bytes, longer than the {MAX_AUDIENCE_LEN}-byte limit",
                aud.len()
            )));
        }
    }
    Ok(())
}

/// Signs `claims` with `key` (an ECDSA P-256 key pair using
/// `ECDSA_P256_SHA256_FIXED_SIGNING`, so the signature is the raw `r || s` JWS wants).
pub fn sign(key: &EcdsaKeyPair, key_id: &str, claims: &Claims) -> Result<String, JwtSvidError> {
    let rng = ring::rand::SystemRandom::new();
    sign_with(key_id, claims, None, |input| {
        key.sign(&rng, input)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| ())
    })
}

/// [`sign`] with a signer that holds the key elsewhere (a PKCS#11 token, say): `signer` gets
/// the JWS signing input and returns the ES256 signature (`r || s`, 64 bytes). `issuer`, when
/// given, becomes the `iss` claim (SPIRE's `jwt_issuer`, which OIDC relying parties check).
pub fn sign_with<E>(
    key_id: &str,
    claims: &Claims,
    issuer: Option<&str>,
    signer: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, JwtSvidError> {
    check_audience(&claims.audience)?;
    let header = json!({ "alg": ALGORITHM, "kid": key_id, "typ": "JWT" });
    let mut body = json!({
        "sub": claims.subject.to_string(),
        "aud": claims.audience,
        "exp": claims.expires_at,
        "iat": claims.issued_at,
    });
    if let Some(issuer) = issuer {
        body["iss"] = json!(issuer);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(body.to_string())
    );
    let signature = signer(signing_input.as_bytes()).map_err(|_| JwtSvidError::Signing)?;
    if signature.len() != 64 {
        return Err(JwtSvidError::Signing);
    }
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// Validates a JWT-SVID for `audience` at time `now` (Unix seconds), as SPIRE's validator
/// does: compact JWS; header only `alg` (exactly ES256), `kid` (required) and `typ` (`JWT` or
/// `JOSE`); `sub` a SPIFFE ID; the key looked up by the trust domain of `sub` and `kid`
/// through `key_for` (which returns the authority's SubjectPublicKeyInfo DER); signature;
/// `exp` in the future; `nbf`, if present, not in the future; `audience` among `aud`.
pub fn validate(
    token: &str,
    audience: &str,
    now: i64,
    key_for: impl Fn(&TrustDomain, &str) -> Option<Vec<u8>>,
) -> Result<Validated, JwtSvidError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtSvidError::Malformed(format!(
            "longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(JwtSvidError::Malformed(
            "a JWT-SVID must be a compact JWS of three dot-separated parts".into(),
        ));
    };
    let header = decode_object(header_b64, "header")?;
    let key_id = check_header(&header)?;
    let mut claims = decode_object(claims_b64, "claims")?;
    let spiffe_id = subject(&claims)?;
    let expires_at = numeric_date(&claims, "exp")?
        .ok_or_else(|| JwtSvidError::InvalidClaims("missing exp".into()))?;
    let token_audience = audiences(&claims)?;

    let spki =
        key_for(spiffe_id.trust_domain(), &key_id).ok_or_else(|| JwtSvidError::UnknownKey {
            key_id: key_id.clone(),
            trust_domain: spiffe_id.trust_domain().to_string(),
        })?;
    let point =
        bundle_format::p256_point_from_spki(&spki).map_err(|_| JwtSvidError::UnknownKey {
            key_id: key_id.clone(),
            trust_domain: spiffe_id.trust_domain().to_string(),
        })?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwtSvidError::Malformed("signature is not base64url".into()))?;
    let signing_input_len = header_b64.len() + 1 + claims_b64.len();
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(&token.as_bytes()[..signing_input_len], &signature)
        .map_err(|_| JwtSvidError::BadSignature)?;

    if expires_at <= now {
        return Err(JwtSvidError::Expired);
    }
    if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now) {
        return Err(JwtSvidError::NotYetValid);
    }
    if !token_audience.iter().any(|a| a == audience) {
        return Err(JwtSvidError::WrongAudience {
            expected: audience.to_owned(),
            actual: token_audience,
        });
    }
    claims.insert("aud".into(), json!(token_audience));
    Ok(Validated { spiffe_id, claims })
}

fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, JwtSvidError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtSvidError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtSvidError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
    }
}

/// JWT-SVID §2: only `alg`, `kid` and `typ` may appear. Returns the key ID.
fn check_header(header: &Map<String, Value>) -> Result<String, JwtSvidError> {
    if let Some(extra) = header
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ"))
    {
        return Err(JwtSvidError::Malformed(format!(
            "header parameter {extra:?} is not allowed in a JWT-SVID"
        )));
    }
    match header.get("alg") {
        Some(Value::String(alg)) if alg == ALGORITHM => {}
        Some(Value::String(alg)) => return Err(JwtSvidError::UnsupportedAlgorithm(alg.clone())),
        _ => return Err(JwtSvidError::Malformed("header has no alg".into())),
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => {}
        Some(other) => {
            return Err(JwtSvidError::Malformed(format!(
                "header typ {other} is neither \"JWT\" nor \"JOSE\""
            )));
        }
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok(kid.clone()),
        _ => Err(JwtSvidError::MissingKeyId),
    }
}

fn subject(claims: &Map<String, Value>) -> Result<SpiffeId, JwtSvidError> {
    let Some(Value::String(sub)) = claims.get("sub") else {
        return Err(JwtSvidError::InvalidClaims(
            "missing sub (the SPIFFE ID)".into(),
        ));
    };
    let id = SpiffeId::new(sub)
        .map_err(|e| JwtSvidError::InvalidClaims(format!("sub {sub:?} is not a SPIFFE ID: {e}")))?;
    // SPIFFE-ID §2.1: the trust domain MUST be lowercase. The spiffe crate accepts uppercase
    // and lowercases it; SPIRE refuses such a `sub`, and so do we (found by fuzz/jwt_svid).
    if id.to_string() != *sub {
        return Err(JwtSvidError::InvalidClaims(format!(
            "sub {sub:?} is not a SPIFFE ID: scheme and trust domain must be lowercase"
        )));
    }
    Ok(id)
}

/// `aud` as a list: a JSON string or a non-empty array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, JwtSvidError> {
    let list = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| JwtSvidError::InvalidClaims("aud holds a non-string".into()))?,
        _ => return Err(JwtSvidError::InvalidClaims("missing aud".into())),
    };
    if list.is_empty() {
        return Err(JwtSvidError::InvalidClaims("aud is empty".into()));
    }
    Ok(list)
}

/// An optional NumericDate claim, truncated to whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtSvidError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            // Truncation of a fractional or huge date is intended: compared in whole seconds.
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| JwtSvidError::InvalidClaims(format!("{name} is not a number"))),
        Some(_) => Err(JwtSvidError::InvalidClaims(format!(
            "{name} is not a number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, KeyPair};

    fn new_key() -> EcdsaKeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parse")
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            subject: SpiffeId::new("spiffe://example.org/app").expect("id"),
            audience: vec!["db".into(), "web".into()],
            issued_at: 1000,
            expires_at: exp,
        }
    }

    fn keys(key: &EcdsaKeyPair) -> impl Fn(&TrustDomain, &str) -> Option<Vec<u8>> {
        let spki = bundle_format::spki_from_p256_point(key.public_key().as_ref());
        move |td, kid| (td.as_str() == "example.org" && kid == "k1").then(|| spki.clone())
    }

    /// A token with a hand-made header and claims, signed by `key`.
    fn forge(key: &EcdsaKeyPair, header: Value, body: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = key.sign(&rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn signs_the_exact_header_and_claims_and_validates() {
        let key = new_key();
        let token = sign(&key, "k1", &claims(2000)).expect("sign");
        let header_b64 = token.split('.').next().expect("header");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).expect("b64"))
                .expect("json");
        assert_eq!(header, json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}));
        let ok = validate(&token, "web", 1500, keys(&key)).expect("valid");
        assert_eq!(ok.spiffe_id.to_string(), "spiffe://example.org/app");
        assert_eq!(ok.claims["aud"], json!(["db", "web"]));
        assert_eq!(ok.claims["exp"], json!(2000));
        assert_eq!(ok.claims["iat"], json!(1000));
    }

    #[test]
    fn rejects_wrong_audience_expiry_and_unknown_keys() {
        let key = new_key();
        let token = sign(&key, "k1", &claims(2000)).expect("sign");
        assert!(matches!(
            validate(&token, "other", 1500, keys(&key)),
            Err(JwtSvidError::WrongAudience { .. })
        ));
        assert_eq!(
            validate(&token, "db", 2000, keys(&key)),
            Err(JwtSvidError::Expired)
        );
        let other = new_key();
        assert_eq!(
            validate(&token, "db", 1500, keys(&other)),
            Err(JwtSvidError::BadSignature)
        );
        let token = sign(&key, "k2", &claims(2000)).expect("sign");
        assert!(matches!(
            validate(&token, "db", 1500, keys(&key)),
            Err(JwtSvidError::UnknownKey { .. })
        ));
    }

    #[test]
    fn rejects_other_algorithms_missing_kid_and_extra_headers() {
        let key = new_key();
        let body = json!({"sub": "spiffe://example.org/app", "aud": ["db"], "exp": 2000});
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        assert_eq!(
            validate(&none, "db", 1500, keys(&key)),
            Err(JwtSvidError::UnsupportedAlgorithm("none".into()))
        );
        let no_kid = forge(&key, json!({"alg": "ES256", "typ": "JWT"}), body.clone());
        assert_eq!(
            validate(&no_kid, "db", 1500, keys(&key)),
            Err(JwtSvidError::MissingKeyId)
        );
        let extra = forge(
            &key,
            json!({"alg": "ES256", "kid": "k1", "jku": "x"}),
            body.clone(),
        );
        assert!(matches!(
            validate(&extra, "db", 1500, keys(&key)),
            Err(JwtSvidError::Malformed(_))
        ));
        let single_aud = forge(
            &key,
            json!({"alg": "ES256", "kid": "k1"}),
            json!({"sub": "spiffe://example.org/app", "aud": "db", "exp": 2000}),
        );
        let ok = validate(&single_aud, "db", 1500, keys(&key)).expect("string aud is accepted");
        assert_eq!(ok.claims["aud"], json!(["db"]), "aud is returned as a list");
        let bad_sub = forge(
            &key,
            json!({"alg": "ES256", "kid": "k1"}),
            json!({"sub": "app", "aud": ["db"], "exp": 2000}),
        );
        assert!(matches!(
            validate(&bad_sub, "db", 1500, keys(&key)),
            Err(JwtSvidError::InvalidClaims(_))
        ));
        assert!(matches!(
            validate("a.b", "db", 1500, keys(&key)),
            Err(JwtSvidError::Malformed(_))
        ));
    }

    #[test]
    fn audience_bounds() {
        assert!(check_audience(&[]).is_err());
        assert!(check_audience(&["".into()]).is_err());
        assert!(check_audience(&["a".repeat(MAX_AUDIENCE_LEN + 1)]).is_err());
        assert!(check_audience(&vec!["a".into(); MAX_AUDIENCES + 1]).is_err());
        assert!(check_audience(&["a".repeat(MAX_AUDIENCE_LEN)]).is_ok());
    }

    #[test]
    fn a_sub_with_an_uppercase_trust_domain_is_refused() {
        // Found by fuzz/jwt_svid: `spiffe://Example.org/app` validated as
        // `spiffe://example.org/app`.
        let key = new_key();
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        for sub in ["spiffe://Example.org/app", "SPIFFE://example.org/app"] {
            let body = json!({"sub": sub, "aud": ["db"], "exp": 2000});
            let token = forge(&key, header.clone(), body);
            assert!(
                matches!(
                    validate(&token, "db", 1500, keys(&key)),
                    Err(JwtSvidError::InvalidClaims(m)) if m.contains("lowercase")
                ),
                "{sub}"
            );
        }
        let body = json!({"sub": "spiffe://example.org/App", "aud": ["db"], "exp": 2000});
        let ok = validate(&forge(&key, header, body), "db", 1500, keys(&key)).expect("valid");
        assert_eq!(
            ok.spiffe_id.to_string(),
            "spiffe://example.org/App",
            "paths keep case"
        );
    }
}
