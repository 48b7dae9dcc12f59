//! Printing results in SPIRE's layout (`pretty`) or as JSON (`json`). The JSON of bundles,
//! federation relationships and batch results has the field names and nesting of SPIRE's
//! protobuf JSON (`UseProtoNames`), with integers as JSON numbers.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use spire_proto::server as pb;

/// Output format of admin commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Pretty,
    Json,
}

/// An RFC 3339 rendering of a Unix timestamp.
pub fn time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn ttl(secs: i32) -> String {
    if secs == 0 {
        "default".into()
    } else {
        secs.to_string()
    }
}

/// An entry as SPIRE's CLI prints it.
pub fn entry_pretty(e: &pb::Entry) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Entry ID         : {}", e.id);
    let _ = writeln!(s, "SPIFFE ID        : {}", e.spiffe_id);
    let _ = writeln!(s, "Parent ID        : {}", e.parent_id);
    let _ = writeln!(s, "Revision         : {}", e.revision_number);
    if e.downstream {
        let _ = writeln!(s, "Downstream       : true");
    }
    let _ = writeln!(s, "X509-SVID TTL    : {}", ttl(e.x509_svid_ttl));
    let _ = writeln!(s, "JWT-SVID TTL     : {}", ttl(e.jwt_svid_ttl));
    if e.expires_at != 0 {
        let _ = writeln!(s, "Expiration time  : {}", time(e.expires_at));
    }
    for sel in &e.selectors {
        let _ = writeln!(s, "Selector         : {}:{}", sel.r#type, sel.value);
    }
    for td in &e.federates_with {
        let _ = writeln!(s, "FederatesWith    : {td}");
    }
    for dns in &e.dns_names {
        let _ = writeln!(s, "DNS name         : {dns}");
    }
    if e.admin {
        let _ = writeln!(s, "Admin            : true");
    }
    if !e.hint.is_empty() {
        let _ = writeln!(s, "Hint             : {}", e.hint);
    }
    s
}

/// An entry as a JSON object with SPIRE's field names.
pub fn entry_json(e: &pb::Entry) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "spiffe_id": e.spiffe_id,
        "parent_id": e.parent_id,
        "selectors": e.selectors.iter().map(|s| serde_json::json!({"type": s.r#type, "value": s.value})).collect::<Vec<_>>(),
        "x509_svid_ttl": e.x509_svid_ttl,
        "jwt_svid_ttl": e.jwt_svid_ttl,
        "dns_names": e.dns_names,
        "federates_with": e.federates_with,
        "hint": e.hint,
        "admin": e.admin,
        "downstream": e.downstream,
        "revision_number": e.revision_number,
        "created_at": e.created_at,
        "expires_at": e.expires_at,
    })
}

/// A bundle as SPIRE's `types.Bundle` in JSON (bytes in standard base64).
pub fn bundle_json(b: &pb::Bundle) -> serde_json::Value {
    serde_json::json!({
        "trust_domain": b.trust_domain,
        "x509_authorities": b.x509_authorities.iter()
            .map(|der| serde_json::json!({ "asn1": BASE64.encode(der), "tainted": false }))
            .collect::<Vec<_>>(),
        "jwt_authorities": b.jwt_authorities.iter()
            .map(|k| serde_json::json!({
                "public_key": BASE64.encode(&k.public_key),
                "key_id": k.key_id,
                "expires_at": k.expires_at,
                "tainted": false,
            }))
            .collect::<Vec<_>>(),
        "refresh_hint": b.refresh_hint,
        "sequence_number": b.sequence_number,
    })
}

/// A federation relationship as SPIRE's `types.FederationRelationship` in JSON: the profile
/// is an `https_spiffe` or `https_web` object.
pub fn relationship_json(r: &pb::FederationRelationship) -> serde_json::Value {
    let mut json = serde_json::json!({
        "trust_domain": r.trust_domain,
        "bundle_endpoint_url": r.bundle_endpoint_url,
    });
    json[r.bundle_endpoint_profile.as_str()] = match r.bundle_endpoint_profile.as_str() {
        "https_spiffe" => serde_json::json!({ "endpoint_spiffe_id": r.endpoint_spiffe_id }),
        _ => serde_json::json!({}),
    };
    if let Some(bundle) = &r.trust_domain_bundle {
        json["trust_domain_bundle"] = bundle_json(bundle);
    }
    json
}

/// A relationship as SPIRE's CLI prints it.
pub fn relationship_pretty(r: &pb::FederationRelationship) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Trust domain              : {}", r.trust_domain);
    let _ = writeln!(s, "Bundle endpoint URL       : {}", r.bundle_endpoint_url);
    let _ = writeln!(
        s,
        "Bundle endpoint profile   : {}",
        r.bundle_endpoint_profile
    );
    if r.bundle_endpoint_profile == "https_spiffe" {
        let _ = writeln!(s, "Endpoint SPIFFE ID        : {}", r.endpoint_spiffe_id);
    }
    s
}

/// The outcome of one item of a batch as SPIRE's `types.Status` in JSON.
pub fn status_json(status: &Result<(), tonic::Status>) -> serde_json::Value {
    match status {
        Ok(()) => serde_json::json!({ "code": 0, "message": "OK" }),
        Err(s) => serde_json::json!({ "code": s.code() as i32, "message": s.message() }),
    }
}

/// Prints a count of things: `{"count": N}` as JSON, else `N <what> <noun>` with the noun
/// (`one` or `many`) agreeing with N.
pub fn print_count(output: Output, count: i64, what: &str, one: &str, many: &str) {
    match output {
        Output::Json => print_json(&serde_json::json!({ "count": count })),
        Output::Pretty => {
            let noun = if count == 1 { one } else { many };
            println!("{count} {what} {noun}");
        }
    }
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
