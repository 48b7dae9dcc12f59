//! Who may call the keeper: [`TABLE`] lists every route with the role its caller must hold
//! (Nexus, for all of them). The TLS handshake already admits Nexus alone; the table says so
//! again per route so that the router ([`crate::routes::router`]) serves only what is
//! classified, and the check before each handler ([`authorize`]) is the only maker of the
//! [`Grant`] that the shard slot asks for.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use identity::http::CallerId;
use nexus_api::routes;
use policies::{Role, RoleDomains};
use spiffe::X509Source;

use crate::routes::ApiError;

/// The HTTP method a keeper route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
}

/// One keeper route and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The method.
    pub method: Method,
    /// The route.
    pub route: &'static str,
    /// The role its caller must hold.
    pub role: Role,
}

/// Every keeper route; nothing else is served.
pub const TABLE: &[Rule] = &[
    Rule {
        method: Method::Post,
        route: routes::KEEPER_CONTRIBUTE,
        role: Role::Nexus,
    },
    Rule {
        method: Method::Post,
        route: routes::KEEPER_SHARD,
        role: Role::Nexus,
    },
    Rule {
        method: Method::Post,
        route: routes::KEEPER_RETAIN,
        role: Role::Nexus,
    },
    Rule {
        method: Method::Get,
        route: routes::KEEPER_HEALTH,
        role: Role::Nexus,
    },
];

/// Proof that the caller of this request holds its route's role; only [`authorize`] makes
/// one.
#[derive(Debug, Clone)]
pub struct Grant {
    _private: (),
}

#[cfg(test)]
impl Grant {
    /// A grant for unit tests of what the routes call.
    pub(crate) fn for_tests() -> Grant {
        Grant { _private: () }
    }
}

/// What [`authorize`] checks a request against: where role IDs count and the route's rule.
#[derive(Debug, Clone)]
pub struct Check {
    /// Where role IDs count: the keeper's trust domain, and for Nexus the federated trust
    /// domains of `--nexus-trust-domains`.
    pub roles: Arc<RoleDomains>,
    /// The route's row of [`TABLE`].
    pub rule: Rule,
    /// The bundles the keeper's agent delivers, asked on each request so that a federated
    /// Nexus's kept-alive connection does not outlive its federation; `None` in unit tests
    /// without an agent.
    pub bundles: Option<X509Source>,
}

/// Middleware: the caller holds the route's role, or the request is answered 401
/// `access_unauthorized`; an allowed request carries its [`Grant`] to the handler.
pub async fn authorize(State(check): State<Check>, mut request: Request, next: Next) -> Response {
    if let (Some(id), Some(bundles)) = (CallerId::of(request.extensions()), &check.bundles)
        && let Some(trust_domain) =
            identity::workload::unfederated(bundles, check.roles.local_trust_domain(), id)
    {
        return ApiError::unauthorized(format!(
            "{id} is not authorised to call {}: this keeper no longer federates with {trust_domain}",
            check.rule.route,
        ))
        .into_response();
    }
    let caller = CallerId::of(request.extensions()).map(ToString::to_string);
    match &caller {
        Some(id) if check.roles.role_of(id) == Some(check.rule.role) => {
            request.extensions_mut().insert(Grant { _private: () });
            next.run(request).await
        }
        _ => ApiError::unauthorized(format!(
            "{} is not authorised to call {}: only {} may",
            caller.as_deref().unwrap_or("a caller without an SVID"),
            check.rule.route,
            check.rule.role.spiffe_id(check.roles.local_trust_domain()),
        ))
        .into_response(),
    }
}
