//! Registration entries at the API edge: validation of what an admin submits, conversion
//! between wire and datastore forms, and which entries an agent is authorised for.

use std::collections::HashSet;

use spiffe::{SpiffeId, TrustDomain};
use spire_proto::server as pb;

use crate::datastore;

/// Most selectors one entry may carry.
pub const MAX_SELECTORS: usize = 64;
/// Most DNS names one entry may carry.
pub const MAX_DNS_NAMES: usize = 32;
/// Longest hint, as SPIRE (hints longer than this are rejected).
pub const MAX_HINT_LEN: usize = 1024;
/// Longest TTL an entry may ask for (one year), a bound on nonsense input.
pub const MAX_TTL_SECS: i32 = 365 * 24 * 3600;

/// Parses a SPIFFE ID that must belong to `td`, naming the field in errors.
pub fn parse_id(field: &str, raw: &str, td: &TrustDomain) -> Result<SpiffeId, String> {
    if raw.is_empty() {
        return Err(format!("{field} is required"));
    }
    let id = spire_proto::flags::canonical_spiffe_id(raw)
        .map_err(|e| format!("invalid {field} {raw:?}: {e}"))?;
    if id.trust_domain() != td {
        return Err(format!(
            "{field} {raw:?} is not in this server's trust domain {:?}",
            td.to_string()
        ));
    }
    Ok(id)
}

/// Parses the SPIFFE ID of a workload: in `td`, with a path, and outside the `/spire`
/// namespace that SPIRE reserves for the server (`/spire/server`) and agents
/// (`/spire/agent/...`). An entry or minted SVID there would let a workload pass as the
/// server to agents, or as an agent to the server.
pub fn parse_workload_id(field: &str, raw: &str, td: &TrustDomain) -> Result<SpiffeId, String> {
    let id = parse_id(field, raw, td)?;
    let path = id.path();
    if path.is_empty() {
        return Err(format!("{field} {raw:?} must have a path"));
    }
    if path == "/spire" || path.starts_with("/spire/") {
        return Err(format!(
            "{field} {raw:?} is not a workload in trust domain {:?}; path is in the reserved \
             namespace \"/spire\"",
            td.to_string()
        ));
    }
    Ok(id)
}

/// Validates an entry submitted by an admin and converts it to the datastore form.
/// `id` is the entry ID to use (given by the admin, or freshly generated).
pub fn validate(
    entry: &pb::Entry,
    id: String,
    td: &TrustDomain,
) -> Result<datastore::Entry, String> {
    let spiffe_id = parse_workload_id("spiffeID", &entry.spiffe_id, td)?;
    let parent_id = parse_id("parentID", &entry.parent_id, td)?;
    if entry.selectors.is_empty() {
        return Err("at least one selector is required".into());
    }
    if entry.selectors.len() > MAX_SELECTORS {
        return Err(format!("at most {MAX_SELECTORS} selectors per entry"));
    }
    let mut selectors = Vec::with_capacity(entry.selectors.len());
    for s in &entry.selectors {
        s.validate().map_err(|e| e.to_string())?;
        selectors.push(datastore::Selector {
            kind: s.r#type.clone(),
            value: s.value.clone(),
        });
    }
    for (name, ttl) in [
        ("x509SVIDTTL", entry.x509_svid_ttl),
        ("jwtSVIDTTL", entry.jwt_svid_ttl),
    ] {
        if !(0..=MAX_TTL_SECS).contains(&ttl) {
            return Err(format!(
                "{name} must be between 0 and {MAX_TTL_SECS} seconds"
            ));
        }
    }
    if entry.dns_names.len() > MAX_DNS_NAMES {
        return Err(format!("at most {MAX_DNS_NAMES} DNS names per entry"));
    }
    for dns in &entry.dns_names {
        validate_dns_name(dns)?;
    }
    if entry.hint.len() > MAX_HINT_LEN {
        return Err(format!("hint is longer than {MAX_HINT_LEN} bytes"));
    }
    for td in &entry.federates_with {
        // Stored as given and matched against bundles' names, so only the canonical spelling.
        spire_proto::flags::canonical_trust_domain(td)
            .map_err(|e| format!("invalid federatesWith {td:?}: {e}"))?;
    }
    if entry.expires_at < 0 {
        return Err("entryExpiry must not be negative".into());
    }
    Ok(datastore::Entry {
        id,
        spiffe_id: spiffe_id.to_string(),
        parent_id: parent_id.to_string(),
        selectors,
        x509_svid_ttl: entry.x509_svid_ttl.into(),
        jwt_svid_ttl: entry.jwt_svid_ttl.into(),
        dns_names: entry.dns_names.clone(),
        federates_with: entry.federates_with.clone(),
        hint: entry.hint.clone(),
        admin: entry.admin,
        downstream: entry.downstream,
        revision_number: 0,
        created_at: 0,
        expires_at: entry.expires_at,
    })
}

/// Validates an entry ID given by an admin (`-entryID`).
pub fn validate_entry_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "entry ID {id:?} must be 1-255 characters of [A-Za-z0-9._-]"
        ))
    }
}

fn validate_dns_name(name: &str) -> Result<(), String> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let mut labels = name.split('.');
    // A wildcard is allowed as the whole leftmost label only.
    let first_ok = labels.next().is_some_and(|l| l == "*" || valid_label(l));
    if name.len() <= 253 && first_ok && labels.all(valid_label) {
        Ok(())
    } else {
        Err(format!("invalid DNS name {name:?}"))
    }
}

/// Converts stored selectors to their wire form.
pub fn selectors_to_proto(selectors: &[datastore::Selector]) -> Vec<pb::Selector> {
    selectors
        .iter()
        .map(|s| pb::Selector {
            r#type: s.kind.clone(),
            value: s.value.clone(),
        })
        .collect()
}

/// Converts a stored entry to its wire form.
pub fn to_proto(entry: &datastore::Entry) -> pb::Entry {
    pb::Entry {
        id: entry.id.clone(),
        spiffe_id: entry.spiffe_id.clone(),
        parent_id: entry.parent_id.clone(),
        selectors: selectors_to_proto(&entry.selectors),
        x509_svid_ttl: i32::try_from(entry.x509_svid_ttl).unwrap_or(i32::MAX),
        jwt_svid_ttl: i32::try_from(entry.jwt_svid_ttl).unwrap_or(i32::MAX),
        dns_names: entry.dns_names.clone(),
        hint: entry.hint.clone(),
        admin: entry.admin,
        federates_with: entry.federates_with.clone(),
        revision_number: entry.revision_number,
        created_at: entry.created_at,
        downstream: entry.downstream,
        expires_at: entry.expires_at,
    }
}

/// The entries an agent may obtain SVIDs for: those parented to the agent, and, transitively,
/// those parented to an entry it holds (a node alias such as the one `token generate
/// -spiffeID` creates). A compromised node therefore cannot mint identities registered under
/// another node.
pub fn authorized_for<'a>(
    agent_id: &str,
    all: &'a [datastore::Entry],
) -> Vec<&'a datastore::Entry> {
    let mut parents: HashSet<&str> = HashSet::from([agent_id]);
    let mut taken = vec![false; all.len()];
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for (i, entry) in all.iter().enumerate() {
            if !taken[i] && parents.contains(entry.parent_id.as_str()) {
                taken[i] = true;
                out.push(entry);
                parents.insert(entry.spiffe_id.as_str());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").expect("valid trust domain")
    }

    fn wire(spiffe_id: &str, parent_id: &str, selectors: &[&str]) -> pb::Entry {
        pb::Entry {
            spiffe_id: spiffe_id.into(),
            parent_id: parent_id.into(),
            selectors: selectors
                .iter()
                .map(|s| s.parse().expect("selector"))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_well_formed_entry() {
        let e = wire(
            "spiffe://example.org/app",
            "spiffe://example.org/agent",
            &["unix:uid:1000"],
        );
        let stored = validate(&e, "id1".into(), &td()).expect("valid");
        assert_eq!(stored.selectors[0].kind, "unix");
        assert_eq!(stored.selectors[0].value, "uid:1000");
    }

    #[test]
    fn workload_ids_stay_out_of_the_reserved_namespace() {
        for reserved in [
            "spiffe://example.org/spire/server",
            "spiffe://example.org/spire/agent/join_token/abc",
            "spiffe://example.org/spire",
        ] {
            let err = validate(
                &wire(reserved, "spiffe://example.org/a", &["unix:uid:1"]),
                "x".into(),
                &td(),
            )
            .expect_err(reserved);
            assert!(err.contains("reserved namespace"), "{err}");
        }
        // Only the `/spire` segment is reserved, not every path starting with those letters;
        // and agents and the server remain valid parents.
        for (id, parent) in [
            (
                "spiffe://example.org/spired",
                "spiffe://example.org/spire/server",
            ),
            (
                "spiffe://example.org/app/spire",
                "spiffe://example.org/spire/agent/x",
            ),
        ] {
            validate(&wire(id, parent, &["unix:uid:1"]), "x".into(), &td()).expect(id);
        }
    }

    #[test]
    fn rejects_bad_ids_selectors_and_bounds() {
        let cases = [
            wire(
                "spiffe://Example.org/app",
                "spiffe://example.org/a",
                &["unix:uid:1"],
            ),
            wire(
                "spiffe://example.org",
                "spiffe://example.org/a",
                &["unix:uid:1"],
            ),
            wire(
                "spiffe://other.org/app",
                "spiffe://example.org/a",
                &["unix:uid:1"],
            ),
            wire(
                "spiffe://example.org/a//b",
                "spiffe://example.org/a",
                &["unix:uid:1"],
            ),
            wire("spiffe://example.org/app", "", &["unix:uid:1"]),
            wire("spiffe://example.org/app", "spiffe://example.org/a", &[]),
        ];
        for case in cases {
            assert!(
                validate(&case, "x".into(), &td()).is_err(),
                "{case:?} should fail"
            );
        }
        let mut e = wire(
            "spiffe://example.org/app",
            "spiffe://example.org/a",
            &["unix:uid:1"],
        );
        e.x509_svid_ttl = -1;
        assert!(validate(&e, "x".into(), &td()).is_err());
        e.x509_svid_ttl = 0;
        e.dns_names = vec!["bad name".into()];
        assert!(validate(&e, "x".into(), &td()).is_err());
        e.dns_names = vec!["*.example.org".into(), "db-1.internal".into()];
        assert!(validate(&e, "x".into(), &td()).is_ok());
        e.hint = "h".repeat(MAX_HINT_LEN + 1);
        assert!(validate(&e, "x".into(), &td()).is_err());
        assert!(validate_entry_id("has space").is_err());
    }

    #[test]
    fn federates_with_takes_only_canonical_trust_domains() {
        let mut e = wire(
            "spiffe://example.org/app",
            "spiffe://example.org/a",
            &["unix:uid:1"],
        );
        for good in ["other.org", "spiffe://other.org"] {
            e.federates_with = vec![good.into()];
            assert!(validate(&e, "x".into(), &td()).is_ok(), "{good}");
        }
        // Stored verbatim, `Other.org` would never match the bundle of `other.org`.
        for bad in [
            "Other.org",
            "spiffe://OTHER.org",
            "spiffe://other.org/path",
            "a b",
        ] {
            e.federates_with = vec![bad.into()];
            let error = validate(&e, "x".into(), &td()).expect_err(bad);
            assert!(error.contains("federatesWith"), "{error}");
        }
    }

    #[test]
    fn agents_get_their_entries_and_their_aliases_entries_only() {
        let td = td();
        let mk = |id: &str, spiffe: &str, parent: &str| {
            let mut e = validate(&wire(spiffe, parent, &["unix:uid:1"]), id.into(), &td)
                .expect("valid entry");
            e.id = id.into();
            e
        };
        let agent = "spiffe://example.org/spire/agent/join_token/t1";
        let all = vec![
            mk("1", "spiffe://example.org/node1", agent),
            mk(
                "2",
                "spiffe://example.org/app",
                "spiffe://example.org/node1",
            ),
            mk("3", "spiffe://example.org/direct", agent),
            mk(
                "4",
                "spiffe://example.org/other",
                "spiffe://example.org/node2",
            ),
        ];
        let mut ids: Vec<_> = authorized_for(agent, &all)
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
