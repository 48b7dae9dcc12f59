//! API errors: SPIKE's `{"err": code}` plus a human message, with the status of the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nexus_api::{ErrorBody, ErrorCode};

use crate::authz::Refusal;
use crate::error::ServiceError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The code (its status follows from it).
    pub code: ErrorCode,
    /// For humans; never a secret value.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 400 `api_bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let code = match &error {
            ServiceError::NotReady(_) | ServiceError::Unavailable => ErrorCode::NotReady,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::Invalid(_) => ErrorCode::BadRequest,
            ServiceError::Internal => ErrorCode::Internal,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotReady(error) => error.into(),
            // 401 `access_unauthorized`, naming the caller.
            Refusal::Denied(denied) => ApiError::new(ErrorCode::Unauthorized, denied.to_string()),
            Refusal::NoPath => {
                tracing::error!(%refusal, "a route requires a body path it does not parse");
                ServiceError::Internal.into()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, axum::Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}
