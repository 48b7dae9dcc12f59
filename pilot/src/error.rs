//! Why a command failed, told so the user knows what to do next.
//!
//! Errors from Nexus arrive as [`ClientError`]s; [`explain`] turns one into a sentence in the
//! user's terms, using what the command was doing ([`Operation`]) and who this process is.
//! Secret values never appear: Nexus's messages do not hold them, and decode errors of a
//! read (which could quote the answer) are not repeated.

use identity::failure::HandshakeFailure;
use identity::https_client::HttpsError;
use nexus_api::{ClientError, ErrorCode};

use crate::input::InputError;
use crate::shard::ShardError;
use crate::template::TemplateError;

/// A failed command. The `Display` text is the whole message for stderr.
#[derive(Debug, thiserror::Error)]
pub enum PilotError {
    /// The command line or its input files were refused before any call.
    #[error("{0}")]
    Input(#[from] InputError),
    /// A policy given to `create` or `apply` is invalid.
    #[error("Invalid policy: {0}")]
    Policy(#[from] policies::PolicyError),
    /// No SVID from the Workload API.
    #[error("{0}")]
    Identity(String),
    /// Nexus refused, failed or could not be reached; already explained.
    #[error("{0}")]
    Nexus(String),
    /// The call worked but the answer does not allow what was asked (a missing key, a
    /// policy name already taken).
    #[error("{0}")]
    Refused(String),
    /// A recovery shard typed or piped in is malformed, or one from Nexus is.
    #[error("Invalid recovery shard: {0}")]
    Shard(#[from] ShardError),
    /// A `spike render` template is invalid.
    #[error("Invalid template {file}: {error}")]
    Template {
        /// The template file.
        file: String,
        /// What is wrong and where.
        error: TemplateError,
    },
    /// A local file, directory or process could not be used (recovery files, rendered
    /// files, templates, reload signals).
    #[error("{0}")]
    Local(String),
    /// `spike exec` could not start its command (exit code 127, as in shells).
    #[error("{0}")]
    Exec(String),
}

impl PilotError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            PilotError::Exec(_) => crate::exec::CANNOT_RUN,
            _ => 1,
        }
    }
}

/// What a call to Nexus was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// `secret put`.
    PutSecret {
        /// Secret path.
        path: &'a str,
    },
    /// `secret get`.
    GetSecret {
        /// Secret path.
        path: &'a str,
        /// Version asked for (0: current).
        version: u64,
    },
    /// `secret delete|undelete|destroy`.
    ChangeVersions {
        /// Secret path.
        path: &'a str,
    },
    /// `secret list`.
    ListSecrets,
    /// `secret metadata get`.
    SecretMetadata {
        /// Secret path.
        path: &'a str,
    },
    /// `policy get` (and the existence check of `create`).
    ReadPolicy {
        /// Policy name.
        name: &'a str,
    },
    /// `policy create|apply|delete`.
    WritePolicy {
        /// Policy name.
        name: &'a str,
    },
    /// `policy list`.
    ListPolicies,
    /// `status`.
    Status,
    /// `operator recover`.
    Recover,
    /// `operator restore`.
    Restore,
    /// `cipher encrypt|decrypt`.
    Cipher,
    /// `operator rotate`.
    Rotate,
    /// `operator seal`.
    Seal,
    /// `operator unseal`.
    Unseal,
    /// `operator rekey`.
    Rekey,
}

impl Operation<'_> {
    /// The permission and target the caller needs, as a policy would grant it.
    fn needs(&self) -> String {
        let acl = policies::SYSTEM_ACL_PATH;
        match self {
            Operation::PutSecret { path } | Operation::ChangeVersions { path } => {
                format!("`write` on secret `{path}`")
            }
            Operation::GetSecret { path, .. } | Operation::SecretMetadata { path } => {
                format!("`read` on secret `{path}`")
            }
            Operation::ListSecrets => "`list` on secrets".into(),
            Operation::ReadPolicy { .. } => format!("`read` on `{acl}` (policy management)"),
            Operation::WritePolicy { .. } => format!("`write` on `{acl}` (policy management)"),
            Operation::ListPolicies => format!("`list` on `{acl}` (policy management)"),
            Operation::Status => "access to the status".into(),
            Operation::Recover => "the recover role".into(),
            Operation::Restore => "the restore role".into(),
            Operation::Rotate => "the superuser role (root key rotation)".into(),
            Operation::Rekey => "the superuser role (rekeying the keepers)".into(),
            Operation::Seal | Operation::Unseal => {
                "the superuser role (sealing and unsealing Nexus)".into()
            }
            Operation::Cipher => format!(
                "`execute` on `{}` (the cipher)",
                policies::SYSTEM_CIPHER_EXEC_PATH
            ),
        }
    }

    /// For break-glass operations: the command and the role (last segment of
    /// `spiffe://<td>/spike/pilot/role/<role>`) it needs.
    fn break_glass(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Operation::Recover => Some(("spike operator recover", "recover")),
            Operation::Restore => Some(("spike operator restore", "restore")),
            _ => None,
        }
    }

    fn is_policy(&self) -> bool {
        matches!(
            self,
            Operation::ReadPolicy { .. } | Operation::WritePolicy { .. } | Operation::ListPolicies
        )
    }

    /// What was not found. Nexus's own message decides between "the secret" and "a version
    /// of it", since only Nexus knows which was missing.
    fn not_found(&self, message: &str) -> String {
        let about_version = message.to_ascii_lowercase().contains("version");
        match *self {
            Operation::GetSecret { path, version } if version > 0 && about_version => {
                format!("Version {version} of {path} not found")
            }
            Operation::ChangeVersions { path } if about_version => {
                format!("Not found in {path}: {message}")
            }
            Operation::PutSecret { path }
            | Operation::GetSecret { path, .. }
            | Operation::ChangeVersions { path }
            | Operation::SecretMetadata { path } => format!("Secret not found: {path}"),
            Operation::ReadPolicy { name } | Operation::WritePolicy { name } => {
                format!("Policy not found: {name}")
            }
            Operation::ListSecrets
            | Operation::ListPolicies
            | Operation::Status
            | Operation::Recover
            | Operation::Restore
            | Operation::Cipher
            | Operation::Rotate
            | Operation::Seal
            | Operation::Unseal
            | Operation::Rekey => format!("Not found: {message}"),
        }
    }
}

/// A call to Nexus: what it was doing, and who called whom.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// What the command was doing.
    pub op: Operation<'a>,
    /// Nexus's URL.
    pub url: &'a str,
    /// Nexus's trust domain.
    pub trust_domain: &'a str,
    /// This process's SPIFFE ID.
    pub own_id: &'a str,
}

/// The message for a failed call.
pub fn explain(error: &ClientError, call: &Call<'_>) -> String {
    match error {
        ClientError::Api {
            status,
            code,
            message,
        } => explain_api(*status, *code, message, call),
        ClientError::Transport(HttpsError::InvalidUrl { url, reason }) => format!(
            "Invalid Nexus URL {url:?}: {reason}. Set --nexus-url or SPIKE_NEXUS_API_URL to https://host:port."
        ),
        ClientError::Transport(HttpsError::Handshake { reason, message }) => {
            let hint = handshake_hint(*reason, call);
            format!(
                "Cannot reach Nexus at {}: the TLS handshake failed ({reason}): {message}. {hint}",
                call.url
            )
        }
        ClientError::Transport(cause) => format!(
            "Cannot reach Nexus at {}: {cause}. Is Nexus running, and is SPIKE_NEXUS_API_URL right?",
            call.url
        ),
        ClientError::Decode(cause) => {
            // A read's answer holds secret values, and parse errors may quote it.
            let cause = match call.op {
                Operation::GetSecret { .. } | Operation::Recover => {
                    "the answer could not be parsed".to_owned()
                }
                _ => cause.clone(),
            };
            format!(
                "Unexpected answer from Nexus at {}: {cause}. Is SPIKE_NEXUS_API_URL pointing at Nexus?",
                call.url
            )
        }
        ClientError::Setup(cause) => format!(
            "Cannot set up the connection to Nexus: {cause}. Check --trust-domain (SPIKE_TRUST_ROOT_NEXUS) and --nexus-url (SPIKE_NEXUS_API_URL)."
        ),
    }
}

/// What to check after a failed handshake, by why it failed.
fn handshake_hint(reason: HandshakeFailure, call: &Call<'_>) -> String {
    let nexus = format!("spiffe://{}/spike/nexus", call.trust_domain);
    match reason {
        HandshakeFailure::UnknownIssuer | HandshakeFailure::BadSignature => format!(
            "The server's certificate is not from this trust domain's CA: check that it is Nexus ({nexus}) and that --trust-domain (SPIKE_TRUST_ROOT_NEXUS) is right."
        ),
        HandshakeFailure::WrongRole
        | HandshakeFailure::ForeignTrustDomain
        | HandshakeFailure::NotSvid => format!(
            "The server is not Nexus: its SVID must be {nexus} (--trust-domain, SPIKE_TRUST_ROOT_NEXUS; is SPIKE_NEXUS_API_URL right?)."
        ),
        HandshakeFailure::PeerAlert => format!(
            "Nexus refused this process's SVID ({}): check that this SPIFFE ID has a registration entry and that Nexus trusts its trust domain.",
            call.own_id
        ),
        HandshakeFailure::Expired | HandshakeFailure::NotYetValid => {
            "A certificate is outside its validity period: check the clocks, and that the SPIRE agent is renewing SVIDs.".to_owned()
        }
        _ => format!(
            "Check that the server is Nexus ({nexus}) and that it trusts this process's trust domain."
        ),
    }
}

fn explain_api(status: u16, code: ErrorCode, message: &str, call: &Call<'_>) -> String {
    // Without a message of its own, the client fills in the bare code or status.
    // Our own wording says "Nexus is not ready"; do not repeat Nexus's.
    let message = message
        .strip_prefix("Nexus is not ready: ")
        .unwrap_or(message);
    let said = |fallback: &str| -> String {
        if message.is_empty() || message == code.as_str() || message.starts_with("HTTP ") {
            fallback.to_owned()
        } else {
            message.to_owned()
        }
    };
    if let Some(text) = explain_break_glass(code, &said, call) {
        return text;
    }
    match code {
        // An operator's seal: Nexus's own message says who, when, and what lifts it.
        ErrorCode::NotReady if message.starts_with("Nexus is sealed") => {
            format!("{message}. `spike status` shows the seal.")
        }
        ErrorCode::NotReady if message.contains("datastore") => format!(
            "Nexus is not ready: {}. Its database cannot be reached right now; retry shortly, and check the database if it lasts.",
            said("its datastore is unavailable")
        ),
        ErrorCode::NotReady => format!(
            "Nexus is not ready: {}. It is waiting for its keepers to return enough shards of the root key; check `spike status` and that the keepers are running.",
            said("it has no root key yet")
        ),
        ErrorCode::Unauthorized => {
            let mut text = format!(
                "Not authorised: this process is {}, and no policy grants it {}. Ask an admin to apply a policy for it.",
                call.own_id,
                call.op.needs()
            );
            if call.op.is_policy() {
                text.push_str(&format!(
                    " Policy management is for the Pilot superuser, spiffe://{}/spike/pilot/role/superuser.",
                    call.trust_domain
                ));
            }
            text
        }
        ErrorCode::NotFound => call.op.not_found(&said("not found")),
        ErrorCode::Conflict => match call.op {
            Operation::PutSecret { .. } => {
                format!("Check-and-set failed: {}", said("the version changed"))
            }
            _ => format!("Conflict: {}", said("it changed meanwhile")),
        },
        ErrorCode::BadRequest => format!("Invalid request: {}", said("Nexus refused it")),
        ErrorCode::PayloadTooLarge => format!(
            "Too large for Nexus: {}. Values and requests are size-limited.",
            said("the request exceeds its limit")
        ),
        ErrorCode::Internal => format!(
            "Nexus failed with an internal error ({}); its log has the details.",
            said("no details")
        ),
        ErrorCode::TooManyRequests => format!(
            "Nexus is rate-limiting {}: {}. Wait a moment and retry.",
            call.own_id,
            said("too many requests")
        ),
        ErrorCode::Timeout => format!(
            "Nexus did not finish the request in time: {}. Retry; if it lasts, check Nexus and its database.",
            said("timed out")
        ),
        ErrorCode::Other => format!("Nexus answered HTTP {status}: {}", said("no explanation")),
    }
}

/// The answers that differ for `operator recover|restore`: who may call, and what a refusal
/// or an unready Nexus means there.
fn explain_break_glass(
    code: ErrorCode,
    said: &dyn Fn(&str) -> String,
    call: &Call<'_>,
) -> Option<String> {
    let (command, role) = call.op.break_glass()?;
    Some(match code {
        ErrorCode::Unauthorized => format!(
            "Not authorised: this process is {}, but `{command}` needs the {role} role, spiffe://{}/spike/pilot/role/{role}. \
             Register this program under that SPIFFE ID (a break-glass role, separate from the superuser) and run it again.",
            call.own_id, call.trust_domain
        ),
        ErrorCode::NotReady if call.op == Operation::Recover => format!(
            "Nexus is not ready ({}), and recovery shards can only be taken from a ready Nexus. \
             If its keepers lost their shards, restore it with `spike operator restore` and shards saved earlier.",
            said("it has no root key")
        ),
        ErrorCode::BadRequest if call.op == Operation::Restore => {
            format!("Nexus refused the shard: {}", said("it is not valid"))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "spiffe://example.org/app/billing";
    const SECRET: &str = "hunter2-value";

    fn call(op: Operation<'_>) -> Call<'_> {
        Call {
            op,
            url: "https://nexus:8553",
            trust_domain: "example.org",
            own_id: ME,
        }
    }

    fn api(code: ErrorCode, message: &str) -> ClientError {
        ClientError::Api {
            status: code.status(),
            code,
            message: message.into(),
        }
    }

    fn get(path: &str, version: u64) -> Operation<'_> {
        Operation::GetSecret { path, version }
    }

    #[test]
    fn not_ready() {
        let text = explain(
            &api(ErrorCode::NotReady, "waiting for 2 of 3 keepers"),
            &call(get("db", 0)),
        );
        assert_eq!(
            text,
            "Nexus is not ready: waiting for 2 of 3 keepers. It is waiting for its keepers to return enough shards of the root key; check `spike status` and that the keepers are running."
        );
        // SPIKE sends the bare code.
        let text = explain(
            &api(ErrorCode::NotReady, "state_not_ready"),
            &call(get("db", 0)),
        );
        assert!(
            text.starts_with("Nexus is not ready: it has no root key yet."),
            "{text}"
        );
    }

    #[test]
    fn unauthorized_names_the_caller_and_the_grant() {
        let error = api(ErrorCode::Unauthorized, "denied");
        let text = explain(&error, &call(get("db/password", 0)));
        assert_eq!(
            text,
            "Not authorised: this process is spiffe://example.org/app/billing, and no policy grants it `read` on secret `db/password`. Ask an admin to apply a policy for it."
        );
        let text = explain(&error, &call(Operation::PutSecret { path: "db" }));
        assert!(text.contains("`write` on secret `db`"), "{text}");
        let text = explain(&error, &call(Operation::ListPolicies));
        assert!(text.contains("`list` on `spike/system/acl`"), "{text}");
        assert!(
            text.contains("spiffe://example.org/spike/pilot/role/superuser"),
            "{text}"
        );
    }

    #[test]
    fn not_found_says_what() {
        let missing = api(ErrorCode::NotFound, "secret \"db\" not found");
        assert_eq!(
            explain(&missing, &call(get("db", 0))),
            "Secret not found: db"
        );
        assert_eq!(
            explain(&missing, &call(get("db", 4))),
            "Secret not found: db"
        );
        let version = api(ErrorCode::NotFound, "version 4 of \"db\" not found");
        assert_eq!(
            explain(&version, &call(get("db", 4))),
            "Version 4 of db not found"
        );
        assert_eq!(
            explain(&missing, &call(Operation::SecretMetadata { path: "db" })),
            "Secret not found: db"
        );
        assert_eq!(
            explain(&version, &call(Operation::ChangeVersions { path: "db" })),
            "Not found in db: version 4 of \"db\" not found"
        );
        let policy = api(ErrorCode::NotFound, "policy \"p\" not found");
        assert_eq!(
            explain(&policy, &call(Operation::ReadPolicy { name: "p" })),
            "Policy not found: p"
        );
        assert_eq!(
            explain(&policy, &call(Operation::WritePolicy { name: "p" })),
            "Policy not found: p"
        );
    }

    #[test]
    fn conflict_bad_request_and_others() {
        let cas = api(
            ErrorCode::Conflict,
            "check-and-set expected version 1, but the current version is 2",
        );
        assert_eq!(
            explain(&cas, &call(Operation::PutSecret { path: "db" })),
            "Check-and-set failed: check-and-set expected version 1, but the current version is 2"
        );
        assert_eq!(
            explain(
                &api(ErrorCode::BadRequest, "path: too long"),
                &call(Operation::PutSecret { path: "db" })
            ),
            "Invalid request: path: too long"
        );
        let large = explain(
            &api(ErrorCode::PayloadTooLarge, "HTTP 413"),
            &call(Operation::PutSecret { path: "db" }),
        );
        assert!(large.starts_with("Too large for Nexus:"), "{large}");
        let internal = explain(
            &api(ErrorCode::Internal, "internal error"),
            &call(get("db", 0)),
        );
        assert!(internal.contains("internal error"), "{internal}");
        let other = explain(
            &ClientError::Api {
                status: 418,
                code: ErrorCode::Other,
                message: "teapot".into(),
            },
            &call(Operation::Status),
        );
        assert_eq!(other, "Nexus answered HTTP 418: teapot");
    }

    #[test]
    fn transport_points_at_the_url() {
        let error = ClientError::Transport(HttpsError::Transport("connection refused".into()));
        assert_eq!(
            explain(&error, &call(Operation::Status)),
            "Cannot reach Nexus at https://nexus:8553: connection refused. Is Nexus running, and is SPIKE_NEXUS_API_URL right?"
        );
        let handshake = |reason| {
            let error = ClientError::Transport(HttpsError::Handshake {
                reason,
                message: "invalid peer certificate".into(),
            });
            explain(&error, &call(Operation::Status))
        };
        for reason in [HandshakeFailure::UnknownIssuer, HandshakeFailure::WrongRole] {
            let text = handshake(reason);
            assert!(text.contains("spiffe://example.org/spike/nexus"), "{text}");
            assert!(text.contains(reason.label()), "{text}");
        }
        let refused = handshake(HandshakeFailure::PeerAlert);
        assert!(refused.contains("refused this process's SVID"), "{refused}");
        assert!(handshake(HandshakeFailure::Expired).contains("clocks"));
        let plain = explain(&error, &call(Operation::Status));
        assert!(!plain.contains("SVID"), "{plain}");
        let url = ClientError::Transport(HttpsError::InvalidUrl {
            url: "http://x".into(),
            reason: "not https".into(),
        });
        assert!(explain(&url, &call(Operation::Status)).contains("SPIKE_NEXUS_API_URL"));
    }

    #[test]
    fn decode_and_setup() {
        let leaky = ClientError::Decode(format!("invalid type: string \"{SECRET}\""));
        let text = explain(&leaky, &call(get("db", 0)));
        assert!(text.starts_with("Unexpected answer from Nexus"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        let text = explain(
            &ClientError::Setup("invalid trust domain \"A B\"".into()),
            &call(Operation::Status),
        );
        assert!(text.contains("SPIKE_TRUST_ROOT_NEXUS"), "{text}");
    }

    #[test]
    fn break_glass_names_the_role_and_the_caller() {
        let denied = api(ErrorCode::Unauthorized, "denied");
        let text = explain(&denied, &call(Operation::Recover));
        assert!(
            text.contains("spiffe://example.org/spike/pilot/role/recover"),
            "{text}"
        );
        assert!(text.contains(ME), "{text}");
        assert!(text.contains("`spike operator recover`"), "{text}");
        let text = explain(&denied, &call(Operation::Restore));
        assert!(
            text.contains("spiffe://example.org/spike/pilot/role/restore"),
            "{text}"
        );
        assert!(text.contains(ME), "{text}");

        let unsealed = api(ErrorCode::BadRequest, "Nexus is already unsealed");
        assert_eq!(
            explain(&unsealed, &call(Operation::Restore)),
            "Nexus refused the shard: Nexus is already unsealed"
        );
        assert_eq!(
            explain(&unsealed, &call(Operation::Recover)),
            "Invalid request: Nexus is already unsealed"
        );
        let sealed = explain(
            &api(ErrorCode::NotReady, "Nexus is not ready: sealed"),
            &call(Operation::Recover),
        );
        assert!(
            sealed.starts_with("Nexus is not ready (sealed), and recovery shards"),
            "{sealed}"
        );
        assert!(sealed.contains("spike operator restore"), "{sealed}");
        let sealed = explain(
            &api(ErrorCode::NotReady, "sealed"),
            &call(Operation::Restore),
        );
        assert!(
            sealed.starts_with("Nexus is not ready: sealed."),
            "{sealed}"
        );
        let leaky = ClientError::Decode("invalid value [1, 2, 3]".into());
        let text = explain(&leaky, &call(Operation::Recover));
        assert!(!text.contains("[1, 2, 3]"), "{text}");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(PilotError::Exec("x".into()).exit_code(), 127);
        assert_eq!(PilotError::Refused("x".into()).exit_code(), 1);
        assert_eq!(PilotError::Local("x".into()).exit_code(), 1);
    }

    #[test]
    fn no_message_ever_holds_a_value() {
        let errors = [
            api(ErrorCode::NotReady, "sealed"),
            api(ErrorCode::Unauthorized, "denied"),
            api(ErrorCode::NotFound, "not found"),
            api(ErrorCode::Conflict, "cas"),
            api(ErrorCode::BadRequest, "bad"),
            api(ErrorCode::PayloadTooLarge, "big"),
            api(ErrorCode::Internal, "oops"),
            api(ErrorCode::Other, "odd"),
            ClientError::Transport(HttpsError::Transport("refused".into())),
            ClientError::Decode(format!("invalid value \"{SECRET}\"")),
            ClientError::Setup("bad".into()),
        ];
        for error in &errors {
            for op in [get("db", 0), get("db", 3)] {
                let text = explain(error, &call(op));
                assert!(!text.contains(SECRET), "{text}");
                assert!(!text.is_empty());
            }
        }
    }
}
