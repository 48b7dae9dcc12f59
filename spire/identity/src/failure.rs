//! Why a TLS handshake failed, as a type: [`HandshakeFailure`] classifies what rustls (and
//! `spiffe-rustls`, and this crate's own verifier through [`PeerRefused`]) report, so that
//! listeners count refusals by reason and clients explain them, without searching messages.

use std::error::Error as StdError;
use std::io;

use rustls::CertificateError;
use spiffe::SpiffeId;

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The first bytes were not a TLS handshake record (plain HTTP, a port scanner...).
    NotTls,
    /// Not finished within the handshake timeout (a silent or stalled client).
    Timeout,
    /// Pushed out by newer connections while the listener's handshake budget was full.
    Evicted,
    /// The peer closed or reset the connection before the end.
    Closed,
    /// A client certificate was required and none was presented.
    NoCertificate,
    /// The peer's chain does not lead to a CA of the trust bundle (another CA, a forged or
    /// self-signed certificate).
    UnknownIssuer,
    /// A signature in the peer's chain does not verify with its issuer's key.
    BadSignature,
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// The peer's SPIFFE ID is in a trust domain that is not accepted here.
    ForeignTrustDomain,
    /// The peer's SPIFFE ID is valid but not allowed on this listener (a workload calling a
    /// keeper, a look-alike role).
    WrongRole,
    /// The peer's certificate is not an X509-SVID (no or several URI SANs, a CA as leaf).
    NotSvid,
    /// Another certificate problem (bad encoding, wrong key usage, revoked...).
    BadCertificate,
    /// The peer sent a TLS alert (it refused us).
    PeerAlert,
    /// Another TLS protocol error (no common version or cipher suite, malformed messages).
    Protocol,
    /// An I/O error other than the peer closing.
    Io,
}

impl HandshakeFailure {
    /// The reason label in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Evicted => "evicted",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::UnknownIssuer => "unknown_issuer",
            HandshakeFailure::BadSignature => "bad_signature",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::NotYetValid => "not_yet_valid",
            HandshakeFailure::ForeignTrustDomain => "foreign_trust_domain",
            HandshakeFailure::WrongRole => "wrong_role",
            HandshakeFailure::NotSvid => "not_svid",
            HandshakeFailure::BadCertificate => "bad_certificate",
            HandshakeFailure::PeerAlert => "peer_alert",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Io => "io",
        }
    }

    /// Whether the peer's certificate does not verify against the trust bundle (the wrong
    /// bundle, or a certificate from elsewhere).
    pub fn is_untrusted_chain(self) -> bool {
        matches!(
            self,
            HandshakeFailure::UnknownIssuer | HandshakeFailure::BadSignature
        )
    }

    /// Classifies a rustls error.
    pub fn of_rustls(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            rustls::Error::InvalidCertificate(certificate) => Self::of_certificate(certificate),
            rustls::Error::Other(other) => Self::of_refusal(other.0.as_ref()),
            rustls::Error::AlertReceived(_) => HandshakeFailure::PeerAlert,
            _ => HandshakeFailure::Protocol,
        }
    }

    fn of_certificate(error: &CertificateError) -> Self {
        match error {
            CertificateError::UnknownIssuer => HandshakeFailure::UnknownIssuer,
            CertificateError::BadSignature => HandshakeFailure::BadSignature,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                HandshakeFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                HandshakeFailure::NotYetValid
            }
            CertificateError::Other(other) => Self::of_refusal(other.0.as_ref()),
            _ => HandshakeFailure::BadCertificate,
        }
    }

    /// A verifier's own error: this crate's [`PeerRefused`] or `spiffe-rustls`'s.
    fn of_refusal(error: &(dyn StdError + 'static)) -> Self {
        if let Some(refused) = error.downcast_ref::<PeerRefused>() {
            return match refused {
                PeerRefused::NotAuthorized(_) => HandshakeFailure::WrongRole,
                PeerRefused::NotSvid(_) => HandshakeFailure::NotSvid,
            };
        }
        match error.downcast_ref::<spiffe_rustls::Error>() {
            Some(
                spiffe_rustls::Error::TrustDomainNotAllowed(_) | spiffe_rustls::Error::NoBundle(_),
            ) => HandshakeFailure::ForeignTrustDomain,
            Some(spiffe_rustls::Error::UnauthorizedSpiffeId(_)) => HandshakeFailure::WrongRole,
            Some(
                spiffe_rustls::Error::MissingSpiffeId
                | spiffe_rustls::Error::MultipleSpiffeIds
                | spiffe_rustls::Error::InvalidLeaf(_)
                | spiffe_rustls::Error::CertParse(_),
            ) => HandshakeFailure::NotSvid,
            Some(spiffe_rustls::Error::Rustls(inner)) => Self::of_rustls(inner),
            _ => HandshakeFailure::BadCertificate,
        }
    }

    /// Classifies the I/O error a TLS handshake (tokio-rustls) failed with: rustls errors
    /// travel inside it.
    pub fn of_io(error: &io::Error) -> Self {
        if let Some(tls) = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return Self::of_rustls(tls);
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
            io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
            _ => HandshakeFailure::Io,
        }
    }

    /// The TLS failure somewhere in `error`'s chain of sources (a client's error, wrapped by
    /// hyper and tonic), if there is one.
    pub fn find(error: &(dyn StdError + 'static)) -> Option<Self> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(tls) = error.downcast_ref::<rustls::Error>() {
                return Some(Self::of_rustls(tls));
            }
            // An `io::Error`'s `source()` is the source of the error it wraps, skipping that
            // error itself (hyper-rustls wraps tokio-rustls' io::Error, which wraps rustls'
            // error, in another io::Error): look inside it instead.
            next = match error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
            {
                Some(inner) => Some(inner as &(dyn StdError + 'static)),
                None => error.source(),
            };
        }
        None
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why this crate's verifier ([`crate::svid_tls`]) refused a peer's certificate after its
/// chain verified. Travels inside rustls' error as `CertificateError::Other`.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefused {
    /// The authorizer does not accept this SPIFFE ID.
    #[error("peer SPIFFE ID {0} is not authorized")]
    NotAuthorized(SpiffeId),
    /// The certificate is not an X509-SVID.
    #[error("{0}")]
    NotSvid(String),
}

impl PeerRefused {
    /// As the rustls error a verifier returns (a bad_certificate alert for the peer).
    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(self),
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spiffe_rustls(error: spiffe_rustls::Error) -> rustls::Error {
        rustls::Error::Other(rustls::OtherError(Arc::new(error)))
    }

    #[test]
    fn rustls_and_spiffe_rustls_errors_get_their_reason() {
        let id = SpiffeId::new("spiffe://example.org/app").expect("id");
        let td = spiffe::TrustDomain::new("other.org").expect("td");
        for (error, expected) in [
            (rustls::Error::NoCertificatesPresented, "no_certificate"),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "unknown_issuer",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "bad_signature",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "expired",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
                "not_yet_valid",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
                "bad_certificate",
            ),
            (
                spiffe_rustls(spiffe_rustls::Error::TrustDomainNotAllowed(td.clone())),
                "foreign_trust_domain",
            ),
            (
                spiffe_rustls(spiffe_rustls::Error::NoBundle(td)),
                "foreign_trust_domain",
            ),
            (
                spiffe_rustls(spiffe_rustls::Error::UnauthorizedSpiffeId(id.clone())),
                "wrong_role",
            ),
            (
                spiffe_rustls(spiffe_rustls::Error::MissingSpiffeId),
                "not_svid",
            ),
            (PeerRefused::NotAuthorized(id).into_rustls(), "wrong_role"),
            (
                PeerRefused::NotSvid("no URI SAN".into()).into_rustls(),
                "not_svid",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
                "peer_alert",
            ),
            (
                rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
                "protocol",
            ),
        ] {
            assert_eq!(
                HandshakeFailure::of_rustls(&error).label(),
                expected,
                "{error}"
            );
        }
    }

    #[test]
    fn io_errors_carry_rustls_errors_or_say_the_peer_left() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            HandshakeFailure::of_io(&tls),
            HandshakeFailure::UnknownIssuer
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeFailure::of_io(&eof), HandshakeFailure::Closed);
        let other = io::Error::other("disk on fire");
        assert_eq!(HandshakeFailure::of_io(&other), HandshakeFailure::Io);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn a_failure_is_found_deep_in_a_client_error_chain() {
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::BadSignature),
        );
        let wrapped = Wrapper(tls);
        let found = HandshakeFailure::find(&wrapped).expect("found");
        assert!(found.is_untrusted_chain());
        // hyper-rustls wraps tokio-rustls' io::Error in another one, whose `source()` skips it.
        let twice = Wrapper(io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        )));
        assert_eq!(
            HandshakeFailure::find(&twice),
            Some(HandshakeFailure::UnknownIssuer)
        );
        assert_eq!(
            HandshakeFailure::find(&Wrapper(io::Error::other("x"))),
            None
        );
    }
}
