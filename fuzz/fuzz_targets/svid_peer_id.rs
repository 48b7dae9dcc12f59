//! The peer's identity from its X.509-SVID (`identity::peer`), on arbitrary DER: what every
//! mTLS listener reads from a client certificate.
//!
//! Properties: an extracted SPIFFE ID re-parses to itself and is the certificate's one and
//! only URI SAN (X509-SVID §2); the serial number is read exactly when the certificate parses,
//! as lowercase hex without leading zeros.
#![no_main]

use identity::peer::{serial_number_from_cert, spiffe_id_from_cert};
use libfuzzer_sys::fuzz_target;
use spiffe::SpiffeId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

fuzz_target!(|der: &[u8]| {
    let parsed = X509Certificate::from_der(der);
    let serial = serial_number_from_cert(der);
    assert_eq!(parsed.is_ok(), serial.is_ok());
    if let Ok(serial) = &serial {
        assert!(!serial.is_empty());
        assert!(serial == "0" || !serial.starts_with('0'), "{serial}");
        assert!(
            serial
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }
    let Ok(id) = spiffe_id_from_cert(der) else {
        return;
    };
    assert_eq!(SpiffeId::new(id.to_string()).as_ref(), Ok(&id));
    let (_, cert) = parsed.expect("an SVID's certificate parses");
    let san = cert
        .subject_alternative_name()
        .expect("SAN parses")
        .expect("an SVID has a SAN");
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    assert_eq!(uris, [id.to_string()], "the one URI SAN is the ID");
});
