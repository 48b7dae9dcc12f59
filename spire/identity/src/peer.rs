//! The SPIFFE ID of the other end of a connection.

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
    SpiffeId::new(uri).map_err(|e| IdentityError::InvalidSvid(format!("URI SAN {uri:?}: {e}")))
}

/// The SPIFFE ID of a connection's verified peer, if it presented a certificate.
///
/// Only meaningful after the handshake, on a connection whose config verifies peers (every
/// config this crate builds does), so the certificate here has already been checked.
pub fn peer_spiffe_id(conn: &rustls::CommonState) -> Option<SpiffeId> {
    let leaf: &CertificateDer<'_> = conn.peer_certificates()?.first()?;
    spiffe_id_from_cert(leaf).ok()
}
