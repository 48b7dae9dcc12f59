//! The keeper's HTTP API, SPIKE-compatible: `POST /v1/store/contribute` stores the shard,
//! `POST /v1/store/shard` returns it, `GET /healthz` reports whether one is held. Only Nexus
//! reaches these routes: the TLS handshake refuses every other SPIFFE ID, and the router is
//! built from [`crate::authz::TABLE`], each route checked again before its handler.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on, post};
use axum::{Extension, Json, Router};
use nexus_api::model::ShardBody;
use nexus_api::routes;
use serde_json::json;

use crate::authz::{self, Check, Grant, Method, TABLE};
use crate::shard::ShardSlot;

/// An API error: SPIKE's `{"err": code}` with a human message.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "api_bad_request",
            message: message.into(),
        }
    }

    /// 401 `access_unauthorized`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "access_unauthorized",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        no_store(
            self.status,
            json!({ "err": self.code, "message": self.message }),
        )
    }
}

/// A JSON response that must not be cached anywhere (it may hold key material).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let headers = [
        (
            header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, private",
        ),
        (header::PRAGMA, "no-cache"),
        (header::EXPIRES, "0"),
    ];
    (status, headers, Json(body)).into_response()
}

/// The keeper's routes over a shard slot, for Nexus of `trust_domain`: those of
/// [`TABLE`], and nothing else.
pub fn router(slot: Arc<ShardSlot>, trust_domain: &str) -> Router {
    let mut router = Router::new();
    for rule in TABLE {
        let Some(handler) = handler(rule.route) else {
            tracing::error!(route = rule.route, "a classified route has no handler");
            continue;
        };
        let filter = match rule.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        };
        let check = Check {
            trust_domain: trust_domain.to_owned(),
            rule: *rule,
        };
        let route = on(filter, handler).route_layer(axum::middleware::from_fn_with_state(
            check,
            authz::authorize,
        ));
        router = router.route(rule.route, route);
    }
    router
        .fallback(|| async { ApiError::bad_request("unknown route") })
        .with_state(slot)
        .layer(axum::extract::DefaultBodyLimit::max(4096))
}

/// The handler of a route of [`TABLE`].
fn handler(route: &str) -> Option<MethodRouter<Arc<ShardSlot>>> {
    match route {
        routes::KEEPER_CONTRIBUTE => Some(post(contribute)),
        routes::KEEPER_SHARD => Some(post(shard)),
        routes::KEEPER_HEALTH => Some(axum::routing::get(health)),
        _ => None,
    }
}

async fn contribute(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
    Extension(grant): Extension<Grant>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Read with the parser Nexus uses for our answers (and `fuzz/` fuzzes), whatever the
    // Content-Type, as SPIKE's keepers do. The body buffer itself is the transport's.
    let value = ShardBody::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if value.iter().all(|b| *b == 0) {
        return Err(ApiError::bad_request("an all-zero shard is not a shard"));
    }
    slot.store(&grant, value);
    tracing::info!("shard stored");
    Ok(no_store(StatusCode::OK, json!({})))
}

async fn shard(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
    Extension(grant): Extension<Grant>,
) -> Result<Response, ApiError> {
    let value = slot
        .get(&grant)
        .ok_or_else(|| ApiError::bad_request("this keeper holds no shard"))?;
    Ok(no_store(StatusCode::OK, json!({ "shard": value.to_vec() })))
}

async fn health(axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>) -> Response {
    no_store(
        StatusCode::OK,
        json!({ "status": "ok", "hasShard": slot.is_full() }),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use identity::listener::PeerInfo;
    use tower::ServiceExt;

    use super::*;

    const NEXUS: &str = "spiffe://td/spike/nexus";

    fn app() -> (Router, Arc<ShardSlot>) {
        let slot = Arc::new(ShardSlot::default());
        (router(slot.clone(), "td"), slot)
    }

    /// One request from `caller` (`None`: no client SVID).
    async fn call_as(
        app: &Router,
        caller: Option<&str>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        request.extensions_mut().insert(PeerInfo {
            spiffe_id: caller.map(|c| c.parse().expect("SPIFFE ID")),
            serial_number: None,
            remote_addr: "127.0.0.1:1".parse().expect("addr"),
        });
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn call(app: &Router, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
        call_as(app, Some(NEXUS), "POST", path, body).await
    }

    #[tokio::test]
    async fn stores_and_returns_a_shard() {
        let (app, _) = app();
        let (status, body) = call(&app, "/v1/store/shard", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["err"], "api_bad_request");

        let shard: Vec<u8> = (1..=32).collect();
        let (status, _) = call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": shard }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(&app, "/v1/store/shard", "{}").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["shard"], json!(shard));
    }

    #[tokio::test]
    async fn rejects_malformed_shards_and_keeps_the_old_one() {
        let (app, _) = app();
        let good: Vec<u8> = vec![7; 32];
        call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": good }).to_string(),
        )
        .await;
        for bad in [
            json!({ "shard": vec![1u8; 31] }).to_string(),
            json!({ "shard": vec![0u8; 32] }).to_string(),
            json!({ "shard": [300] }).to_string(),
            "{not json".to_owned(),
            "".to_owned(),
        ] {
            let (status, body) = call(&app, "/v1/store/contribute", &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["err"], "api_bad_request");
        }
        let (_, body) = call(&app, "/v1/store/shard", "{}").await;
        assert_eq!(body["shard"], json!(good));
    }

    #[tokio::test]
    async fn every_route_of_the_table_is_for_nexus_only() {
        let (app, slot) = app();
        let shard = json!({ "shard": vec![9u8; 32] }).to_string();
        for rule in TABLE {
            let method = match rule.method {
                Method::Get => "GET",
                Method::Post => "POST",
            };
            for caller in [
                Some("spiffe://td/spike/keeper/k1"),
                Some("spiffe://td/spike/pilot/role/superuser"),
                Some("spiffe://td/spike/nexus-x"),
                Some("spiffe://other/spike/nexus"),
                None,
            ] {
                let (status, body) = call_as(&app, caller, method, rule.route, &shard).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{caller:?} {}",
                    rule.route
                );
                assert_eq!(body["err"], "access_unauthorized");
            }
            let (status, _) = call_as(&app, Some(NEXUS), method, rule.route, &shard).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{}", rule.route);
            assert!(handler(rule.route).is_some(), "{}", rule.route);
        }
        assert!(slot.is_full(), "Nexus's contribute went through");
        let (status, body) = call(&app, "/v1/store/other", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "unknown route");
    }

    #[tokio::test]
    async fn debug_never_shows_the_shard() {
        let (app, slot) = app();
        let (status, _) = call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": vec![42u8; 32] }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(format!("{slot:?}"), "ShardSlot([REDACTED])");
    }
}
