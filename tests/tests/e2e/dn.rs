//! The issuer and subject names of DER certificates, which the CA suites compare to tell
//! which CA signed what.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The issuer DN of a DER certificate.
pub fn issuer(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate parses");
    cert.issuer().to_string()
}

/// The subject DN of a DER certificate.
pub fn subject(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("certificate parses");
    cert.subject().to_string()
}
