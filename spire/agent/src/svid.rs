//! Keys, CSRs and the lifetime arithmetic the agent applies to every SVID it holds.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

/// A fresh P-256 key (PKCS#8 DER) and a CSR over it. The server ignores the CSR's subject and
/// names the SVID itself, so the CSR carries none.
pub fn new_key_and_csr() -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok((csr.der().to_vec(), Zeroizing::new(key.serialize_der())))
}

/// NotBefore and NotAfter of a DER certificate, in Unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether an SVID valid from `not_before` to `not_after` should be renewed at `now`: once
/// half of its lifetime has passed, as SPIRE does, so a renewal that fails has the other half
/// to be retried.
pub fn should_renew(not_before: i64, not_after: i64, now: i64) -> bool {
    let lifetime = (not_after - not_before).max(0);
    not_after - now <= lifetime / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_half_life() {
        assert!(!should_renew(0, 100, 49));
        assert!(should_renew(0, 100, 50));
        assert!(should_renew(0, 100, 200));
    }

    #[test]
    fn generates_a_parsable_csr() {
        let (csr, key) = new_key_and_csr().expect("key and CSR");
        assert!(!csr.is_empty());
        assert!(KeyPair::try_from(key.as_slice()).is_ok());
    }
}
