//! Nexus's v1 HTTP API (SPIKE's routes and shapes): every call `POST`, the operation in
//! `?action=`, JSON bodies, errors as `{"err": code, "message": ...}`.
//!
//! Every request is authorised by the caller's SPIFFE ID from its verified client
//! certificate, after Nexus is known to be ready, and leaves one audit line
//! ([`crate::audit`]) before its answer goes out.

mod audit;
mod cipher_routes;
mod error;
mod limits;
mod operator_routes;
mod policy_routes;
mod secret_routes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nexus_api::ErrorCode;
use nexus_api::model::StatusResponse;
use nexus_api::routes::{self, Action};
use serde::de::DeserializeOwned;

pub use error::ApiError;
pub use limits::ApiLimits;
use limits::CallerRates;

use crate::service::Nexus;
use crate::validate::MAX_BODY_BYTES;

/// The API's routes over `nexus`.
pub fn router(nexus: Arc<Nexus>, limits: &ApiLimits) -> Router {
    let mut router = Router::new()
        .route(
            routes::SECRETS,
            post(secret_routes::secrets).fallback(wrong_method),
        )
        .route(
            routes::SECRETS_METADATA,
            post(secret_routes::metadata).fallback(wrong_method),
        )
        .route(
            routes::POLICY,
            post(policy_routes::policy).fallback(wrong_method),
        )
        .route(
            routes::RECOVER,
            post(operator_routes::recover).fallback(wrong_method),
        )
        .route(
            routes::RESTORE,
            post(operator_routes::restore).fallback(wrong_method),
        )
        .route(
            routes::ROTATE,
            post(operator_routes::rotate).fallback(wrong_method),
        )
        .route(
            routes::CIPHER_ENCRYPT,
            post(cipher_routes::encrypt).fallback(wrong_method),
        )
        .route(
            routes::CIPHER_DECRYPT,
            post(cipher_routes::decrypt).fallback(wrong_method),
        )
        .route(routes::STATUS, post(status).get(status))
        .fallback(unknown_route)
        .with_state(nexus.clone())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            limits::deadline,
        ));
    // Outermost last: every answer, refusals included, is audited and marked no-store.
    if let Some(rates) = CallerRates::new(limits) {
        router = router.layer(axum::middleware::from_fn_with_state(
            rates,
            limits::rate_limit,
        ));
    }
    router
        .layer(axum::middleware::from_fn_with_state(nexus, audit::record))
        .layer(axum::middleware::map_response(no_store))
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

async fn status(axum::extract::State(nexus): axum::extract::State<Arc<Nexus>>) -> Response {
    let status: StatusResponse = nexus.keys.status();
    (StatusCode::OK, axum::Json(status)).into_response()
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
