//! Relationships as `federation create|update` take them: from flags, or from a `-data` file
//! in SPIRE's JSON (`{"federationRelationships": [{"trustDomain": ..., "bundleEndpointURL":
//! ..., "bundleEndpointProfile": ..., "endpointSPIFFEID": ..., "trustDomainBundle": ...,
//! "trustDomainBundleFormat": ...}]}`). Everything is parsed and checked here, before any
//! request is sent; the server checks each relationship again.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use spire_proto::bundle_format;
use spire_proto::server as pb;

use super::bundle::Format;
use super::entry_batch::{MAX_BATCH, read};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    #[serde(rename = "federationRelationships")]
    relationships: Vec<DataRelationship>,
}

/// One relationship as SPIRE's `-data` files write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataRelationship {
    #[serde(rename = "trustDomain")]
    trust_domain: String,
    #[serde(rename = "bundleEndpointURL")]
    url: String,
    #[serde(rename = "bundleEndpointProfile")]
    profile: String,
    #[serde(rename = "endpointSPIFFEID", default)]
    endpoint_spiffe_id: String,
    /// A PEM string (format `pem`) or a SPIFFE bundle object (format `spiffe`).
    #[serde(rename = "trustDomainBundle", default)]
    bundle: Option<Value>,
    #[serde(rename = "trustDomainBundleFormat", default)]
    bundle_format: Option<String>,
}

/// The relationships of a `-data` file (`-` is standard input), all checked before any is
/// sent.
pub fn parse_file(path: &Path) -> anyhow::Result<Vec<pb::FederationRelationship>> {
    let file: DataFile = serde_json::from_slice(&read(path)?).map_err(|e| {
        anyhow::anyhow!(
            "{}: not SPIRE's federation relationships JSON: {e}",
            path.display()
        )
    })?;
    if file.relationships.len() > MAX_BATCH {
        anyhow::bail!(
            "{}: at most {MAX_BATCH} relationships per file",
            path.display()
        );
    }
    file.relationships
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            from_data(r).map_err(|e| anyhow::anyhow!("{}: item {i}: {e}", path.display()))
        })
        .collect()
}

fn from_data(r: DataRelationship) -> anyhow::Result<pb::FederationRelationship> {
    let bundle = match r.bundle {
        None => None,
        Some(value) => {
            let (data, format) = match (value, r.bundle_format.as_deref()) {
                (Value::String(pem), None | Some("pem")) => (pem.into_bytes(), Format::Pem),
                (object @ Value::Object(_), None | Some("spiffe")) => {
                    (object.to_string().into_bytes(), Format::Spiffe)
                }
                (_, Some(format)) if format != "pem" && format != "spiffe" => {
                    anyhow::bail!("trustDomainBundleFormat {format:?} is not \"pem\" or \"spiffe\"")
                }
                _ => anyhow::bail!(
                    "trustDomainBundle must be a PEM string (format pem) or a SPIFFE bundle \
                     object (format spiffe)"
                ),
            };
            Some(bootstrap_bundle(&r.trust_domain, &data, format)?)
        }
    };
    Ok(pb::FederationRelationship {
        trust_domain: r.trust_domain,
        bundle_endpoint_url: r.url,
        bundle_endpoint_profile: r.profile,
        endpoint_spiffe_id: r.endpoint_spiffe_id,
        trust_domain_bundle: bundle,
    })
}

/// Parses a bundle of `trust_domain` given with a relationship, in `format`.
pub fn bootstrap_bundle(
    trust_domain: &str,
    data: &[u8],
    format: Format,
) -> anyhow::Result<pb::Bundle> {
    let looks_json = data.trim_ascii_start().starts_with(b"{");
    match (format, looks_json) {
        (Format::Pem, true) => anyhow::bail!("the trust domain bundle is JSON; give format spiffe"),
        (Format::Spiffe, false) => {
            anyhow::bail!("the trust domain bundle is not SPIFFE JSON; give format pem")
        }
        _ => {}
    }
    let td = trust_domain.trim_start_matches("spiffe://");
    bundle_format::parse_bundle(td, data)
        .map_err(|e| anyhow::anyhow!("invalid trust domain bundle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> anyhow::Result<Vec<pb::FederationRelationship>> {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), json).expect("write");
        parse_file(file.path())
    }

    #[test]
    fn reads_spire_data_files_and_refuses_bad_ones() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("CA");
        let file = serde_json::json!({"federationRelationships": [
            {"trustDomain": "web.org", "bundleEndpointURL": "https://web.org/b",
             "bundleEndpointProfile": "https_web"},
            {"trustDomain": "other.org", "bundleEndpointURL": "https://other.org:8443",
             "bundleEndpointProfile": "https_spiffe",
             "endpointSPIFFEID": "spiffe://other.org/spire/server",
             "trustDomainBundle": ca.cert.pem(), "trustDomainBundleFormat": "pem"}
        ]});
        let parsed = parse(&file.to_string()).expect("valid file");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].bundle_endpoint_profile, "https_web");
        assert!(parsed[0].trust_domain_bundle.is_none());
        assert_eq!(
            parsed[1].endpoint_spiffe_id,
            "spiffe://other.org/spire/server"
        );
        let bundle = parsed[1].trust_domain_bundle.as_ref().expect("bundle");
        assert_eq!(bundle.trust_domain, "other.org");
        assert_eq!(bundle.x509_authorities, vec![ca.cert.der().to_vec()]);

        for (bad, expected) in [
            (r#"{"relationships": []}"#, "not SPIRE's"),
            (
                r#"{"federationRelationships": [{"trustDomain": "a.org"}]}"#,
                "not SPIRE's",
            ),
            (
                r#"{"federationRelationships": [{"trustDomain": "a.org",
                    "bundleEndpointURL": "https://a", "bundleEndpointProfile": "https_web",
                    "trustDomainBundle": 7}]}"#,
                "item 0",
            ),
            (
                r#"{"federationRelationships": [{"trustDomain": "a.org",
                    "bundleEndpointURL": "https://a", "bundleEndpointProfile": "https_web",
                    "trustDomainBundle": "not PEM", "trustDomainBundleFormat": "pem"}]}"#,
                "invalid trust domain bundle",
            ),
            (
                r#"{"federationRelationships": [{"trustDomain": "a.org",
                    "bundleEndpointURL": "https://a", "bundleEndpointProfile": "https_web",
                    "trustDomainBundle": {"keys": []}, "trustDomainBundleFormat": "pem"}]}"#,
                "PEM string",
            ),
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
