//! Printing results in SPIRE's layout (`pretty`) or as JSON (`json`).

use std::fmt::Write as _;

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

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
