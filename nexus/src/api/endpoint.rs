//! One skeleton for every route: read the action (for routes that take one), look up what
//! it requires in [`crate::authz::TABLE`] (refusing what the table does not list), read and
//! parse the body, authorise the caller, and only then hand the request and its [`Grant`]
//! to the route. The audit record is filled here, from the same steps, for every route.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use identity::http::CallerId;
use nexus_api::model::{Empty, GetSecretRequest, RekeyRequest, RestoreRequest};
use nexus_api::routes::Action;

use super::audit::Audit;
use super::{ApiError, action, body};
use crate::authz::{self, Grant};
use crate::service::Nexus;

/// One route of the API: how its request is read, and what it does once authorised.
pub(super) trait Endpoint: 'static {
    /// The route: a key of [`authz::TABLE`].
    const ROUTE: &'static str;
    /// Whether `?action=` selects the operation (else the route refuses any action).
    const TAKES_ACTION: bool = false;
    /// Whether the route reads a body at all.
    const READS_BODY: bool = true;

    /// What authorisation needs to read from the request, and the route then serves.
    type Request: Body;

    /// The secret path the request names, for requirements on the body's path.
    fn path(_request: &Self::Request) -> Option<&str> {
        None
    }

    /// The answer to an action the table does not list for this route.
    fn unsupported(action: Option<Action>) -> ApiError {
        ApiError::bad_request(format!(
            "unknown action {:?}",
            action.and_then(Action::as_query).unwrap_or_default()
        ))
    }

    /// Serves an authorised request.
    fn serve(
        call: Call<'_, Self::Request>,
    ) -> impl Future<Output = Result<Response, ApiError>> + Send;
}

/// An authorised request, as a route serves it.
pub(super) struct Call<'a, R> {
    /// The service.
    pub nexus: &'a Nexus,
    /// What the caller was allowed.
    pub grant: Grant,
    /// The request as read.
    pub request: R,
    /// Its audit record, where a route notes what it learns after authorisation (a
    /// policy's name, a shard's id).
    pub audit: &'a mut Audit,
}

/// A request as read from its body (and headers) for an action, before authorisation.
/// Messages never quote the body, which may hold a secret.
pub(super) trait Body: Sized + Send {
    /// Reads the request for `action`.
    fn read(action: Option<Action>, body: Bytes, headers: &HeaderMap) -> Result<Self, ApiError>;
}

/// Requests that are a JSON body whatever the action.
macro_rules! json_bodies {
    ($($request:ty),*) => {$(
        impl Body for $request {
            fn read(_: Option<Action>, body: Bytes, _: &HeaderMap) -> Result<Self, ApiError> {
                super::parse(&body)
            }
        }
    )*};
}

json_bodies!(Empty, GetSecretRequest, RestoreRequest, RekeyRequest);

/// Routes that read nothing.
impl Body for () {
    fn read(_: Option<Action>, _: Bytes, _: &HeaderMap) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The axum handler of endpoint `E`.
pub(super) async fn handle<E: Endpoint>(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(E::ROUTE);
    let request = Incoming {
        caller: &caller,
        query: query.as_deref(),
        headers: &headers,
        body,
    };
    let outcome = run::<E>(&nexus, request, &mut audit).await;
    audit.finish(outcome)
}

/// A request as it arrives.
struct Incoming<'a> {
    caller: &'a spiffe::SpiffeId,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Result<Bytes, BytesRejection>,
}

async fn run<E: Endpoint>(
    nexus: &Nexus,
    incoming: Incoming<'_>,
    audit: &mut Audit,
) -> Result<Response, ApiError> {
    let action = action(incoming.query)?;
    let action = if E::TAKES_ACTION {
        audit.action = Some(action);
        Some(action)
    } else if action == Action::Put {
        None
    } else {
        // A route without actions takes none (as SPIKE's router): `rotate?action=delete` is
        // refused, not served as a rotation.
        return Err(E::unsupported(Some(action)));
    };
    let requirement = authz::requirement(E::ROUTE, action).ok_or_else(|| E::unsupported(action))?;
    let bytes = if E::READS_BODY {
        body(incoming.body)?
    } else {
        Bytes::new()
    };
    let request = E::Request::read(action, bytes, incoming.headers)?;
    let judgement = authz::authorize(nexus, incoming.caller, requirement, E::path(&request)).await;
    audit.judged(&judgement);
    let grant = judgement.outcome?;
    E::serve(Call {
        nexus,
        grant,
        request,
        audit,
    })
    .await
}
