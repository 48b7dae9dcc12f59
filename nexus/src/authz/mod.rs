//! Who may call what, decided in one place.
//!
//! [`TABLE`] lists every route of the API and, for routes that take `?action=`, every action,
//! with what the caller must hold ([`Requirement`]); it is the only source the router is
//! built from ([`crate::api::router`]), so a route or action nobody classified cannot be
//! reached (SPIRE's `authpolicy` works the same way). [`authorize`] judges a caller against
//! a requirement and is the only maker of a [`Grant`], the proof that the service methods
//! touching secrets, policies, keys or shards take.
//!
//! The Pilot superuser holds every [`Requirement::Permission`]; other role IDs hold exactly
//! what the table gives their role and are never judged by policies; every other caller
//! gets what policies grant. A federated trust domain's role-shaped ID holds the role only
//! where that trust domain is listed for it (`Access::role`, from `policies::RoleDomains`);
//! otherwise it is one of the other callers.
//!
//! A caller of another trust domain is refused outright once Nexus no longer holds a bundle
//! of that trust domain ([`Nexus::with_bundles`]): the TLS end refuses its new connections
//! from then on, and this refuses the requests of connections it opened before (kept
//! alive, they would otherwise outlive the federation until they go idle).

mod grant;
mod table;

use policies::{Permission, Role};
use spiffe::{SpiffeId, TrustDomain};

pub use grant::{Grant, NotGranted, Scope};
pub use table::{Object, Requirement, Rule, TABLE, requirement, route, routes};

use crate::audit::Decision;
use crate::error::ServiceError;
use crate::service::Nexus;

/// What [`authorize`] decided, and what the audit line records of it.
#[derive(Debug)]
pub struct Judgement {
    /// The path judged: the body's secret path or a system path (none for roles and lists).
    pub target: Option<String>,
    /// Allowed, denied, or not decided (Nexus not ready).
    pub decision: Decision,
    /// The proof, or why there is none.
    pub outcome: Result<Grant, Refusal>,
}

/// Why a caller got no grant.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Nexus cannot judge yet (sealed, or the policy cache cannot be brought up to date).
    #[error(transparent)]
    NotReady(ServiceError),
    /// The caller does not hold what the route requires.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The route needs a secret path from the body and the request had none (a route
    /// implementation fault, never the caller's).
    #[error("the request names no path to authorise")]
    NoPath,
}

/// A caller refused: the message names the caller and what it lacked.
#[derive(Debug, thiserror::Error)]
#[error("{caller} is not authorised to {wanted}")]
pub struct Denied {
    /// Who asked.
    pub caller: SpiffeId,
    /// What it lacked.
    pub wanted: Wanted,
}

/// What a refused caller lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A permission on a path.
    Permission(Permission, String),
    /// A role, by its ID.
    Role(Role, String),
    /// A trust domain Nexus still federates with (holds a bundle of).
    Federation(TrustDomain),
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Permission(permission, path) => write!(f, "{permission} {path:?}"),
            Wanted::Role(role, id) => write!(f, "use {id} (only {role} may)"),
            Wanted::Federation(td) => {
                write!(f, "call from {td}: this Nexus no longer federates with it")
            }
        }
    }
}

/// Judges `caller` against `requirement`; `body_path` is the secret path the request
/// names, for [`Object::BodyPath`]. Whatever needs the root key is judged only once Nexus
/// is ready, and policies only once the cache reflects every change committed so far, on
/// any replica.
pub async fn authorize(
    nexus: &Nexus,
    caller: &SpiffeId,
    requirement: Requirement,
    body_path: Option<&str>,
) -> Judgement {
    let mut judgement = Judgement {
        target: None,
        decision: Decision::None,
        outcome: Err(Refusal::NoPath),
    };
    judgement.outcome = judge(nexus, caller, requirement, body_path, &mut judgement).await;
    judgement
}

async fn judge(
    nexus: &Nexus,
    caller: &SpiffeId,
    requirement: Requirement,
    body_path: Option<&str>,
    judgement: &mut Judgement,
) -> Result<Grant, Refusal> {
    let access = &nexus.access;
    if let Some(trust_domain) = unfederated(nexus, caller) {
        judgement.decision = Decision::Deny;
        return Err(Denied {
            caller: caller.clone(),
            wanted: Wanted::Federation(trust_domain),
        }
        .into());
    }
    let scope = match requirement {
        Requirement::Anyone => Scope::Anyone,
        Requirement::Role(role) => {
            if access.role(caller) != Some(role) {
                judgement.decision = Decision::Deny;
                return Err(Denied {
                    caller: caller.clone(),
                    wanted: Wanted::Role(role, role.spiffe_id(access.trust_domain())),
                }
                .into());
            }
            judgement.decision = Decision::Allow;
            Scope::Role(role)
        }
        Requirement::ReadableFilter => {
            nexus.root().map_err(Refusal::NotReady)?;
            judgement.decision = Decision::Allow;
            if !access.is_superuser(caller) {
                nexus
                    .policies()
                    .current()
                    .await
                    .map_err(Refusal::NotReady)?;
            }
            Scope::Readable
        }
        Requirement::Permission { permission, on } => {
            let path = match on {
                Object::BodyPath => body_path.ok_or(Refusal::NoPath)?,
                Object::System(path) | Object::SystemOrRole(path, _) => path,
            };
            judgement.target = Some(path.to_owned());
            nexus.root().map_err(Refusal::NotReady)?;
            let role = access.role(caller);
            let privileged = role == Some(Role::Superuser)
                || matches!(on, Object::SystemOrRole(_, holder) if role == Some(holder));
            if !privileged {
                nexus
                    .policies()
                    .current()
                    .await
                    .map_err(Refusal::NotReady)?;
            }
            if !(privileged || access.allows(caller, path, permission)) {
                judgement.decision = Decision::Deny;
                return Err(Denied {
                    caller: caller.clone(),
                    wanted: Wanted::Permission(permission, path.to_owned()),
                }
                .into());
            }
            judgement.decision = Decision::Allow;
            Scope::Path {
                permission,
                path: path.to_owned(),
            }
        }
    };
    Ok(Grant::new(caller.clone(), scope))
}

/// The caller's trust domain if it is another one and Nexus's agent no longer delivers its
/// bundle (see [`identity::workload::unfederated`]).
fn unfederated(nexus: &Nexus, caller: &SpiffeId) -> Option<TrustDomain> {
    let bundles = nexus.bundles.as_ref()?;
    identity::workload::unfederated(bundles, nexus.access.trust_domain(), caller)
}
