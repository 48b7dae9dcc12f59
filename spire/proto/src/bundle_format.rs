//! Trust bundle file formats: PEM (concatenated `CERTIFICATE` blocks) and the SPIFFE bundle
//! format (a JWK Set, SPIFFE Trust Domain and Bundle standard §4), as `spire-server bundle show`
//! prints them and `spire-agent run -trustBundle` reads them.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::server::Bundle;

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
/// `jwt-svid` keys carry `kid`; plus `spiffe_sequence` and `spiffe_refresh_hint`.
pub fn to_spiffe_json(bundle: &Bundle) -> Result<String, BundleFormatError> {
    let mut keys = Vec::new();
    for der in &bundle.x509_authorities {
        let mut jwk = ec_jwk(der)?;
        jwk["use"] = json!("x509-svid");
        jwk["x5c"] = json!([STANDARD.encode(der)]);
        keys.push(jwk);
    }
    let mut doc = json!({ "keys": keys });
    if bundle.refresh_hint > 0 {
        doc["spiffe_refresh_hint"] = json!(bundle.refresh_hint);
    }
    doc["spiffe_sequence"] = json!(bundle.sequence_number);
    serde_json::to_string_pretty(&doc).map_err(|e| BundleFormatError(e.to_string()))
}

/// The public key of a P-256 certificate as a JWK (`kty`, `crv`, `x`, `y`).
fn ec_jwk(der: &[u8]) -> Result<Value, BundleFormatError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| BundleFormatError(format!("unparsable CA certificate: {e}")))?;
    let point = cert.public_key().subject_public_key.data.as_ref();
    // An uncompressed P-256 point: 0x04 || X (32 bytes) || Y (32 bytes).
    if point.len() != 65 || point[0] != 4 {
        return Err(BundleFormatError(
            "CA key is not an uncompressed P-256 point".into(),
        ));
    }
    Ok(json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    }))
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
