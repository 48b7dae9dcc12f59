//! One audit line per request: who, what, on which path, the decision and the outcome. Never
//! a secret value. Written through `tracing` with target `audit`.

use std::time::Instant;

use axum::response::{IntoResponse, Response};
use nexus_api::routes::Action;

use policies::Permission;

use super::ApiError;
use crate::service::Nexus;

/// The audit record of one request, filled in as the request is understood.
pub struct Audit<'a> {
    caller: &'a str,
    route: &'static str,
    /// The action, once parsed.
    pub action: Option<Action>,
    /// The secret path or policy name, once parsed.
    pub target: String,
    /// `allow` or `deny` once authorisation ran; `none` before.
    pub decision: &'static str,
    started: Instant,
}

impl<'a> Audit<'a> {
    /// Starts the record for `caller` on `route`.
    pub fn new(caller: &'a str, route: &'static str) -> Self {
        Audit {
            caller,
            route,
            action: None,
            target: String::new(),
            decision: "none",
            started: Instant::now(),
        }
    }

    /// The caller's SPIFFE ID.
    pub fn caller(&self) -> &'a str {
        self.caller
    }

    /// Refuses unless Nexus is ready and the caller may do `wanted` on `target`; records the
    /// target and the decision. A caller other than the superuser is judged by a policy set
    /// that reflects every change committed so far, on any replica.
    pub async fn authorize(
        &mut self,
        nexus: &Nexus,
        target: &str,
        wanted: Permission,
    ) -> Result<(), ApiError> {
        self.target = target.to_owned();
        nexus.root()?;
        if !nexus.access.is_superuser(self.caller) {
            nexus.current_policies().await?;
        }
        if nexus.access.allows(self.caller, target, wanted) {
            self.decision = "allow";
            Ok(())
        } else {
            self.decision = "deny";
            Err(ApiError::unauthorized(
                self.caller,
                format!("{wanted} {target:?}"),
            ))
        }
    }

    /// Writes the line and turns the outcome into the response.
    pub fn finish(self, outcome: Result<Response, ApiError>) -> Response {
        let response = match outcome {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let request_id = uuid::Uuid::new_v4();
        tracing::info!(
            target: "audit",
            request_id = %request_id,
            caller = self.caller,
            route = self.route,
            action = self.action.map(|a| a.as_query().unwrap_or("put")).unwrap_or("-"),
            path = %self.target,
            decision = self.decision,
            status = response.status().as_u16(),
            latency_us = self.started.elapsed().as_micros() as u64,
        );
        let mut response = response;
        if let Ok(value) = axum::http::HeaderValue::from_str(&request_id.to_string()) {
            response.headers_mut().insert("x-request-id", value);
        }
        response
    }
}
