//! Nexus's v1 HTTP API (SPIKE's routes and shapes): every call `POST`, the operation in
//! `?action=`, JSON bodies, errors as `{"err": code, "message": ...}`.
//!
//! The router is built from [`authz::TABLE`]: only the routes and actions it lists are
//! served, each through one skeleton (`endpoint`) that authorises the caller by the SPIFFE
//! ID of its verified client certificate before the route runs. Every request leaves one
//! audit line ([`crate::audit`]) before its answer goes out.

mod audit;
mod cipher_routes;
mod endpoint;
mod error;
mod limits;
mod operator_routes;
mod parse;
mod policy_routes;
mod secret_routes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use nexus_api::ErrorCode;
use nexus_api::model::StatusResponse;
use nexus_api::routes::{self, Action};
use serde::de::DeserializeOwned;
use tower::ServiceBuilder;

pub use crate::authz;
pub use error::ApiError;
pub use limits::ApiLimits;
use limits::CallerRates;
pub use parse::parse_request;

use self::endpoint::{Call, Endpoint, handle};
use crate::error::{Invalid, ServiceError};
use crate::service::Nexus;
use crate::validate::MAX_BODY_BYTES;

/// The API's routes over `nexus`: those of [`authz::TABLE`], and nothing else.
pub fn router(nexus: Arc<Nexus>, limits: &ApiLimits) -> Router {
    let endpoints = endpoints();
    let mut router = Router::new();
    for route in authz::routes() {
        match endpoints.iter().find(|(served, _)| *served == route) {
            Some((_, endpoint)) => router = router.route(route, endpoint.clone()),
            // Answered like any unknown route; a test keeps this from happening.
            None => tracing::error!(route, "a classified route has no endpoint"),
        }
    }
    let routes = router.fallback(unknown_route).with_state(nexus.clone());
    // The middleware wraps the routes once, as one service. Layered on the router
    // (`Router::layer`), each layer would wrap every route's handler, every level a boxed
    // service that axum clones on each request: about 16 allocations of a read's 100
    // (docs/performance.md). Outermost first: every answer, refusals included, is audited
    // and marked no-store.
    let api = ServiceBuilder::new()
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(nexus, audit::record))
        .option_layer(
            CallerRates::new(limits)
                .map(|rates| axum::middleware::from_fn_with_state(rates, limits::rate_limit)),
        )
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            limits::deadline,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .service(routes);
    Router::new().fallback_service(api)
}

/// Every endpoint, by its route. The router mounts those [`authz::TABLE`] lists.
fn endpoints() -> [(&'static str, MethodRouter<Arc<Nexus>>); 12] {
    fn post_only<E: Endpoint>() -> (&'static str, MethodRouter<Arc<Nexus>>) {
        (E::ROUTE, post(handle::<E>).fallback(wrong_method))
    }
    [
        post_only::<secret_routes::Secrets>(),
        post_only::<secret_routes::Metadata>(),
        post_only::<policy_routes::Policy>(),
        post_only::<operator_routes::Recover>(),
        post_only::<operator_routes::Restore>(),
        post_only::<operator_routes::Rotate>(),
        post_only::<operator_routes::Seal>(),
        post_only::<operator_routes::Unseal>(),
        post_only::<operator_routes::Rekey>(),
        post_only::<cipher_routes::Encrypt>(),
        post_only::<cipher_routes::Decrypt>(),
        (Status::ROUTE, get(handle::<Status>).post(handle::<Status>)),
    ]
}

/// `/v1/status`: initialisation, seal state and keeper reachability, for anyone.
struct Status;

impl Endpoint for Status {
    const ROUTE: &'static str = routes::STATUS;
    const READS_BODY: bool = false;
    type Request = ();

    async fn serve(call: Call<'_, ()>) -> Result<Response, ApiError> {
        let status: StatusResponse = call.nexus.keys.status();
        Ok(ok(status))
    }
}

/// A request that is invalid for one of the reasons [`Invalid`] names.
fn invalid(reason: impl Into<Invalid>) -> ApiError {
    ServiceError::invalid(reason).into()
}

/// Responses may hold secrets: nothing between Nexus and the client may keep them.
async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, private"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    response
}

async fn unknown_route() -> ApiError {
    ApiError::bad_request("unknown route")
}

async fn wrong_method() -> ApiError {
    ApiError::bad_request("every v1 call is a POST")
}

/// The `action` query parameter.
fn action(query: Option<&str>) -> Result<Action, ApiError> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("action="));
    Action::parse(value).map_err(|other| ApiError::bad_request(format!("unknown action {other:?}")))
}

/// The request body, or 413 when it is over the limit.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body over the limit of {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Parses a JSON body. The message locates the problem but never quotes the input, which may
/// be a secret.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let detail = if text.starts_with("missing field") || text.starts_with("unknown field") {
            text.split(" at line").next().unwrap_or_default().to_owned()
        } else {
            match e.classify() {
                serde_json::error::Category::Eof => "the body ends early".to_owned(),
                serde_json::error::Category::Syntax => "the body is not valid JSON".to_owned(),
                _ => "a field has the wrong type".to_owned(),
            }
        };
        ApiError::bad_request(format!(
            "malformed request: {detail} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn ok(body: impl serde::Serialize) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_classified_route_has_exactly_one_endpoint() {
        let endpoints = endpoints();
        for route in authz::routes() {
            let count = endpoints.iter().filter(|(r, _)| *r == route).count();
            assert_eq!(count, 1, "{route}");
        }
        for (route, _) in &endpoints {
            assert!(authz::routes().contains(route), "{route} is not classified");
        }
    }
}
