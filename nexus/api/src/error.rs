//! Error codes and the error body, `{"err": code, "message": text}`.

use serde::{Deserialize, Serialize};

/// An error code of the v1 API. SPIKE's codes keep their meaning and status; the others are
/// additions for what SPIKE does not have (check-and-set, body and rate limits, timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `api_bad_request` (400): malformed body, invalid field, unknown route or action.
    BadRequest,
    /// `access_unauthorized` (401): the caller's SPIFFE ID may not do this.
    Unauthorized,
    /// `api_not_found` (404)
    NotFound,
    /// `api_conflict` (409): check-and-set mismatch or a policy name already taken.
    Conflict,
    /// `api_payload_too_large` (413)
    PayloadTooLarge,
    /// `api_too_many_requests` (429): the caller's rate limit; retry after `Retry-After`.
    TooManyRequests,
    /// `api_internal_error` (500)
    Internal,
    /// `api_timeout` (503): the request did not finish in time; retry.
    Timeout,
    /// `state_not_ready` (503): Nexus has no root key yet.
    NotReady,
    /// A code this version does not know (kept verbatim).
    Other,
}

impl ErrorCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "api_bad_request",
            ErrorCode::Unauthorized => "access_unauthorized",
            ErrorCode::NotFound => "api_not_found",
            ErrorCode::Conflict => "api_conflict",
            ErrorCode::PayloadTooLarge => "api_payload_too_large",
            ErrorCode::TooManyRequests => "api_too_many_requests",
            ErrorCode::Internal => "api_internal_error",
            ErrorCode::Timeout => "api_timeout",
            ErrorCode::NotReady => "state_not_ready",
            ErrorCode::Other => "unknown",
        }
    }

    /// The code for a wire string.
    pub fn parse(code: &str) -> Self {
        match code {
            "api_bad_request" => ErrorCode::BadRequest,
            "access_unauthorized" => ErrorCode::Unauthorized,
            "api_not_found" => ErrorCode::NotFound,
            "api_conflict" => ErrorCode::Conflict,
            "api_payload_too_large" => ErrorCode::PayloadTooLarge,
            "api_too_many_requests" => ErrorCode::TooManyRequests,
            "api_internal_error" => ErrorCode::Internal,
            "api_timeout" => ErrorCode::Timeout,
            "state_not_ready" => ErrorCode::NotReady,
            _ => ErrorCode::Other,
        }
    }

    /// The HTTP status the server answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal | ErrorCode::Other => 500,
            ErrorCode::NotReady | ErrorCode::Timeout => 503,
        }
    }

    /// The code a client infers from a bare HTTP status when the body has none.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => ErrorCode::BadRequest,
            401 | 403 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            429 => ErrorCode::TooManyRequests,
            503 => ErrorCode::NotReady,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The code (SPIKE's `err`).
    pub err: String,
    /// What went wrong, for humans. Never holds a secret value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl ErrorBody {
    /// An error body for `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            err: code.as_str().to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_with_statuses() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::TooManyRequests,
            ErrorCode::Internal,
            ErrorCode::NotReady,
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert_eq!(ErrorCode::from_status(code.status()), code);
        }
        // A 503 without a body is most likely "not ready"; with one, the code says which.
        assert_eq!(ErrorCode::parse("api_timeout"), ErrorCode::Timeout);
        assert_eq!(ErrorCode::Timeout.status(), 503);
    }

    #[test]
    fn spike_error_bodies_parse() {
        let body: ErrorBody = serde_json::from_str(r#"{"err":"state_not_ready"}"#).expect("body");
        assert_eq!(ErrorCode::parse(&body.err), ErrorCode::NotReady);
        assert!(body.message.is_empty());
    }
}
