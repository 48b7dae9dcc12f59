//! The SPIFFE ID (and certificate serial number) of the other end of a connection.

use rustls_pki_types::CertificateDer;
use spiffe::SpiffeId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::IdentityError;

/// Reads the SPIFFE ID from an X509-SVID leaf certificate.
///
/// X509-SVID §2: an SVID carries exactly one URI SAN, and it is the SPIFFE ID. A certificate with
/// none or several is not an SVID.
pub fn spiffe_id_from_cert(der: &[u8]) -> Result<SpiffeId, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::InvalidSvid(format!("unparsable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::InvalidSvid(format!("bad subjectAltName: {e}")))?
        .ok_or_else(|| IdentityError::InvalidSvid("no subjectAltName extension".into()))?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(IdentityError::InvalidSvid(
            "must have exactly one URI SAN".into(),
        ));
    };
    let id = SpiffeId::new(uri)
        .map_err(|e| IdentityError::InvalidSvid(format!("URI SAN {uri:?}: {e}")))?;
    // SPIFFE-ID §2.1: the trust domain MUST be lowercase. The spiffe crate accepts uppercase
    // and lowercases it; go-spiffe refuses such an SVID, and so do we (found by
    // fuzz/svid_peer_id).
    if id.to_string() != uri {
        return Err(IdentityError::InvalidSvid(format!(
            "URI SAN {uri:?}: scheme and trust domain must be lowercase"
        )));
    }
    Ok(id)
}

/// The SPIFFE ID of a connection's verified peer, if it presented a certificate.
///
/// Only meaningful after the handshake, on a connection whose config verifies peers (every
/// config this crate builds does), so the certificate here has already been checked.
pub fn peer_spiffe_id(conn: &rustls::CommonState) -> Option<SpiffeId> {
    let leaf: &CertificateDer<'_> = conn.peer_certificates()?.first()?;
    spiffe_id_from_cert(leaf).ok()
}

/// The serial number of a certificate as lowercase hexadecimal without leading zeros, the form
/// the identity server records for the agent SVIDs it issues.
pub fn serial_number_from_cert(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| IdentityError::InvalidSvid(format!("unparsable certificate: {e}")))?;
    Ok(format!("{:x}", cert.tbs_certificate.serial))
}

/// The serial number of a connection's verified peer certificate, if it presented one; see
/// [`serial_number_from_cert`] for the form.
pub fn peer_serial_number(conn: &rustls::CommonState) -> Option<String> {
    let leaf: &CertificateDer<'_> = conn.peer_certificates()?.first()?;
    serial_number_from_cert(leaf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_lowercase_hex_without_leading_zeros() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let cert = params.self_signed(&key).expect("certificate");
        assert_eq!(serial_number_from_cert(cert.der()).expect("serial"), "abc");
    }

    fn svid_with_uri(uri: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(uri).expect("IA5"),
        )];
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn uppercase_trust_domains_are_not_spiffe_ids() {
        // Found by fuzz/svid_peer_id: `spiffe://Example.org/app` was read as
        // `spiffe://example.org/app`.
        for uri in ["spiffe://Example.org/app", "SPIFFE://example.org/app"] {
            let error = spiffe_id_from_cert(&svid_with_uri(uri)).expect_err(uri);
            assert!(error.to_string().contains("lowercase"), "{error}");
        }
        let id = spiffe_id_from_cert(&svid_with_uri("spiffe://example.org/App")).expect("SVID");
        assert_eq!(
            id.to_string(),
            "spiffe://example.org/App",
            "paths keep case"
        );
    }
}
