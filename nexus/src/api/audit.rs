//! The audit line of every request: handlers note what they understood ([`Audit`]), and
//! [`record`] writes the line through [`crate::audit`] before the response leaves. A
//! request whose line cannot be written is answered 500 instead, so nothing is served
//! unrecorded.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use identity::http::CallerId;
use nexus_api::ErrorCode;
use nexus_api::routes::Action;

use super::ApiError;
use crate::audit::{self as audit_log, AuditRecord, Decision};
use crate::authz::Judgement;
use crate::service::Nexus;

/// Longest request path quoted in the line of a request to an unknown route.
const MAX_UNKNOWN_ROUTE: usize = 200;

tokio::task_local! {
    /// Where an [`Audit`] dropped before [`Audit::finish`] leaves what it had noted: a handler
    /// cut off by the request deadline is dropped mid-way, and its line should still say what
    /// was asked (action, path, decision) and not only that it timed out.
    static UNFINISHED: std::cell::RefCell<Option<AuditNote>>;
}

/// The audit record of one request, filled in as the request is understood.
pub struct Audit {
    route: &'static str,
    /// The action, once parsed.
    pub action: Option<Action>,
    /// The secret path or policy name, once known.
    pub target: String,
    /// Allow or deny once authorisation ran; none before.
    pub decision: Decision,
    /// Set by [`Audit::finish`]; an unfinished record is handed over when dropped.
    finished: bool,
}

/// What a handler noted, handed to [`record`] in the response's extensions.
#[derive(Debug, Clone)]
struct AuditNote {
    route: &'static str,
    action: Option<Action>,
    target: String,
    decision: Decision,
}

impl Audit {
    /// Starts the record of a request on `route`.
    pub fn new(route: &'static str) -> Self {
        Audit {
            route,
            action: None,
            target: String::new(),
            decision: Decision::None,
            finished: false,
        }
    }

    /// Notes what authorisation judged: the path it judged (if any) and its decision.
    pub fn judged(&mut self, judgement: &Judgement) {
        if let Some(target) = &judgement.target {
            self.target.clone_from(target);
        }
        self.decision = judgement.decision;
    }

    /// Turns the outcome into the response, carrying the note for [`record`].
    pub fn finish(mut self, outcome: Result<Response, ApiError>) -> Response {
        let mut response = match outcome {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        self.finished = true;
        response.extensions_mut().insert(self.note());
        response
    }

    fn note(&mut self) -> AuditNote {
        AuditNote {
            route: self.route,
            action: self.action,
            target: std::mem::take(&mut self.target),
            decision: self.decision,
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.finished {
            let note = self.note();
            // Outside `record` (handler unit tests) there is no slot, and nothing to tell.
            let _ = UNFINISHED.try_with(|slot| *slot.borrow_mut() = Some(note));
        }
    }
}

/// Middleware: runs the request, writes its audit line, then lets the response go (with its
/// `x-request-id`), or answers 500 if the line could not be written.
pub async fn record(State(nexus): State<Arc<Nexus>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let time = audit_log::timestamp(nexus.clock.now());
    // A version 4 UUID from the thread's CSPRNG (ChaCha, seeded and reseeded from the OS)
    // rather than `Uuid::new_v4`, which asks the kernel (`getrandom(2)`) on every request.
    let request_id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string();
    let caller =
        CallerId::of(request.extensions()).map_or_else(|| "-".to_owned(), ToString::to_string);
    let mut uri_path = request.uri().path().to_owned();
    // The metrics' label: a served route, never the caller's arbitrary path.
    let matched = crate::authz::route(request.uri().path());
    let (mut response, unfinished) = UNFINISHED
        .scope(std::cell::RefCell::new(None), async {
            let response = next.run(request).await;
            (response, UNFINISHED.with(|slot| slot.borrow_mut().take()))
        })
        .await;
    let note = response
        .extensions_mut()
        .remove::<AuditNote>()
        .or(unfinished);
    let route = note.as_ref().map_or_else(
        || {
            let mut end = MAX_UNKNOWN_ROUTE.min(uri_path.len());
            while !uri_path.is_char_boundary(end) {
                end -= 1;
            }
            uri_path.truncate(end);
            uri_path.as_str()
        },
        |n| n.route,
    );
    let line = AuditRecord {
        time,
        request_id: &request_id,
        caller: &caller,
        route,
        action: note
            .as_ref()
            .and_then(|n| n.action)
            .map_or("-", |a| a.as_query().unwrap_or("put")),
        path: note.as_ref().map_or("", |n| n.target.as_str()),
        decision: note.as_ref().map_or(Decision::None, |n| n.decision),
        status: response.status().as_u16(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    };
    nexus.metrics.request(
        matched.unwrap_or("unmatched"),
        line.status,
        started.elapsed().as_secs_f64(),
    );
    if let Err(error) = nexus.audit.write(&line) {
        nexus.metrics.audit_failure();
        tracing::error!(%error, request_id, "audit line not written; the request is refused");
        response = ApiError::new(
            ErrorCode::Internal,
            "the audit log cannot be written, so this request is refused; an operator must fix the audit log",
        )
        .into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
