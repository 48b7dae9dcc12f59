//! `spike status`: whether Nexus is ready, and if not, why (keepers unreachable, fewer shards
//! than the threshold). Exit code 3 tells scripts "answered, but not ready".

use nexus_api::model::{SealState, StatusResponse};

use crate::cli::GlobalArgs;
use crate::context::Session;
use crate::error::{Operation, PilotError};
use crate::output::{Format, Output, structured};

/// Exit code when Nexus answered but is not ready.
pub const NOT_READY: u8 = 3;

/// Runs `spike status`.
pub async fn run(global: &GlobalArgs) -> Result<Output, PilotError> {
    let session = Session::connect(global).await?;
    let status = session
        .client()
        .status()
        .await
        .map_err(session.fail(Operation::Status))?;
    Ok(Output {
        stdout: render(&status, global.format).into_bytes(),
        code: exit_code(&status),
    })
}

/// 0 when ready, [`NOT_READY`] otherwise.
pub fn exit_code(status: &StatusResponse) -> u8 {
    if status.state == SealState::Ready {
        0
    } else {
        NOT_READY
    }
}

fn state_name(state: SealState) -> &'static str {
    match state {
        SealState::Uninitialized => "uninitialized",
        SealState::Sealed => "sealed",
        SealState::Ready => "ready",
    }
}

/// The status for people, or the API's shape.
pub fn render(status: &StatusResponse, format: Format) -> String {
    if let Some(text) = structured(status, format) {
        return text;
    }
    let k = &status.keepers;
    // The generation once a rekey changed the keeper set (0: as configured).
    let generation = if k.generation > 0 {
        format!(", keeper set generation {}", k.generation)
    } else {
        String::new()
    };
    let mut out = format!(
        "State: {}\nInitialized: {}\nKeepers: {} of {} reachable (threshold {}{generation})\nVersion: {}\n",
        state_name(status.state),
        if status.initialized { "yes" } else { "no" },
        k.reachable,
        k.total,
        k.threshold,
        status.version,
    );
    if let Some(seal) = &status.operator_seal {
        out.push_str(&format!("Sealed by: {} at {}\n", seal.by, seal.at));
    }
    if !status.message.is_empty() {
        out.push_str(&format!("Message: {}\n", status.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use nexus_api::model::KeeperStatus;

    use super::*;

    fn sample(state: SealState, message: &str) -> StatusResponse {
        StatusResponse {
            initialized: state != SealState::Uninitialized,
            state,
            keepers: KeeperStatus {
                total: 3,
                reachable: 1,
                threshold: 2,
                generation: 0,
            },
            message: message.into(),
            operator_seal: None,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn human() {
        let sealed = sample(SealState::Sealed, "waiting for 2 of 3 keepers");
        assert_eq!(
            render(&sealed, Format::Human),
            "State: sealed\nInitialized: yes\nKeepers: 1 of 3 reachable (threshold 2)\nVersion: 0.1.0\nMessage: waiting for 2 of 3 keepers\n"
        );
        let mut rekeyed = sample(SealState::Ready, "");
        rekeyed.keepers.generation = 2;
        assert!(
            render(&rekeyed, Format::Human)
                .contains("Keepers: 1 of 3 reachable (threshold 2, keeper set generation 2)\n")
        );
        let ready = render(&sample(SealState::Ready, ""), Format::Human);
        assert!(ready.starts_with("State: ready\n"), "{ready}");
        assert!(!ready.contains("Message"), "{ready}");
        let new = render(&sample(SealState::Uninitialized, ""), Format::Human);
        assert!(
            new.contains("State: uninitialized\nInitialized: no\n"),
            "{new}"
        );
    }

    #[test]
    fn human_says_who_sealed_and_when() {
        let mut sealed = sample(SealState::Sealed, "sealed by an operator");
        sealed.operator_seal = Some(nexus_api::model::OperatorSeal {
            by: "spiffe://td/spike/pilot/role/superuser".into(),
            at: "2026-12-06T08:00:00.000Z".into(),
        });
        let text = render(&sealed, Format::Human);
        assert!(
            text.contains(
                "Sealed by: spiffe://td/spike/pilot/role/superuser at 2026-12-06T08:00:00.000Z\nMessage: sealed by an operator\n"
            ),
            "{text}"
        );
        assert_eq!(exit_code(&sealed), NOT_READY);
    }

    #[test]
    fn structured_is_the_api_shape() {
        let sealed = sample(SealState::Sealed, "waiting");
        let json: serde_json::Value =
            serde_json::from_str(&render(&sealed, Format::Json)).unwrap_or_default();
        assert_eq!(json["state"], "sealed");
        assert_eq!(json["keepers"]["threshold"], 2);
        assert_eq!(json["keepers"]["reachable"], 1);
        assert_eq!(json["message"], "waiting");
        let yaml: serde_json::Value =
            serde_norway::from_str(&render(&sealed, Format::Yaml)).unwrap_or_default();
        assert_eq!(yaml, json);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&sample(SealState::Ready, "")), 0);
        assert_eq!(exit_code(&sample(SealState::Sealed, "")), NOT_READY);
        assert_eq!(exit_code(&sample(SealState::Uninitialized, "")), NOT_READY);
    }
}
