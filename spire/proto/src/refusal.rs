//! Why the agent API refused an agent: a `PermissionDenied` status whose details carry a
//! [`Reason`], so the agent acts on the reason (attest again, or stop) instead of on message
//! text. SPIRE's agent does the same with `PermissionDeniedDetails`
//! (`pkg/common/nodeutil`: expired, not active and not attested mean "re-attest", banned means
//! "shut down").

use prost::Message;
use tonic::{Code, Status};

use crate::server::PermissionDeniedDetails;
pub use crate::server::permission_denied_details::Reason;

/// A `PermissionDenied` status carrying `reason` in its details.
pub fn permission_denied(reason: Reason, message: impl Into<String>) -> Status {
    let details = PermissionDeniedDetails {
        reason: reason.into(),
    };
    Status::with_details(
        Code::PermissionDenied,
        message,
        tonic::codegen::Bytes::from(details.encode_to_vec()),
    )
}

/// The reason of a `PermissionDenied` status made by [`permission_denied`]; `None` for any
/// other status (another code, no details, or details that do not decode).
pub fn reason(status: &Status) -> Option<Reason> {
    if status.code() != Code::PermissionDenied || status.details().is_empty() {
        return None;
    }
    let details = PermissionDeniedDetails::decode(status.details()).ok()?;
    match Reason::try_from(details.reason) {
        Ok(Reason::Unknown) | Err(_) => None,
        Ok(reason) => Some(reason),
    }
}

/// Whether an agent refused for `reason` should attest again (if its attestation method
/// allows it) rather than keep presenting the SVID it has: SPIRE's `ShouldAgentReattest`.
pub fn should_reattest(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::AgentExpired | Reason::AgentNotActive | Reason::AgentNotAttested
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_survives_the_trip_through_a_status() {
        for reason in [
            Reason::AgentExpired,
            Reason::AgentNotActive,
            Reason::AgentNotAttested,
            Reason::AgentMustReattest,
            Reason::AgentBanned,
        ] {
            let status = permission_denied(reason, "no");
            assert_eq!(status.code(), Code::PermissionDenied);
            assert_eq!(status.message(), "no");
            assert_eq!(super::reason(&status), Some(reason));
        }
    }

    #[test]
    fn other_statuses_have_no_reason() {
        assert_eq!(reason(&Status::permission_denied("no details")), None);
        assert_eq!(reason(&Status::unavailable("server down")), None);
        let garbage = Status::with_details(
            Code::PermissionDenied,
            "x",
            tonic::codegen::Bytes::from_static(&[0xff, 0xff]),
        );
        assert_eq!(reason(&garbage), None);
        // Another code with our details is still not a refusal.
        let other = Status::with_details(
            Code::Unavailable,
            "x",
            tonic::codegen::Bytes::from(
                PermissionDeniedDetails {
                    reason: Reason::AgentBanned.into(),
                }
                .encode_to_vec(),
            ),
        );
        assert_eq!(reason(&other), None);
    }

    #[test]
    fn expired_inactive_and_unknown_agents_reattest_banned_ones_do_not() {
        assert!(should_reattest(Reason::AgentExpired));
        assert!(should_reattest(Reason::AgentNotActive));
        assert!(should_reattest(Reason::AgentNotAttested));
        assert!(!should_reattest(Reason::AgentBanned));
        assert!(!should_reattest(Reason::AgentMustReattest));
    }
}
