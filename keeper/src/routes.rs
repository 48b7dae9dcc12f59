//! The keeper's HTTP API, SPIKE-compatible: `POST /v1/store/contribute` stores the shard,
//! `POST /v1/store/shard` returns it, `GET /healthz` reports whether one is held. Only Nexus
//! reaches these routes: the TLS handshake refuses every other SPIFFE ID.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nexus_api::model::ShardBody;
use nexus_api::routes;
use serde_json::json;
use zeroize::Zeroizing;

use crate::shard::{SHARD_LEN, ShardSlot};

/// An API error: SPIKE's `{"err": code}` with a human message.
struct ApiError {
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

/// The keeper's routes over a shard slot.
pub fn router(slot: Arc<ShardSlot>) -> Router {
    Router::new()
        .route(routes::KEEPER_CONTRIBUTE, post(contribute))
        .route(routes::KEEPER_SHARD, post(shard))
        .route(routes::KEEPER_HEALTH, get(health))
        .fallback(|| async { ApiError::bad_request("unknown route") })
        .with_state(slot)
        .layer(axum::extract::DefaultBodyLimit::max(4096))
}

async fn contribute(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
    body: Result<Json<ShardBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mut body) =
        body.map_err(|e| ApiError::bad_request(format!("malformed request: {}", e.body_text())))?;
    let body = Zeroizing::new(std::mem::take(&mut body.shard));
    let value: [u8; SHARD_LEN] = body.as_slice().try_into().map_err(|_| {
        ApiError::bad_request(format!(
            "shard must be {SHARD_LEN} numbers, got {}",
            body.len()
        ))
    })?;
    let value = Zeroizing::new(value);
    if value.iter().all(|b| *b == 0) {
        return Err(ApiError::bad_request("an all-zero shard is not a shard"));
    }
    slot.store(value);
    tracing::info!("shard stored");
    Ok(no_store(StatusCode::OK, json!({})))
}

async fn shard(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
) -> Result<Response, ApiError> {
    let value = slot
        .get()
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
    use tower::ServiceExt;

    use super::*;

    async fn call(app: &Router, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
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

    #[tokio::test]
    async fn stores_and_returns_a_shard() {
        let app = router(Arc::new(ShardSlot::default()));
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
        let app = router(Arc::new(ShardSlot::default()));
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
    async fn serves_exactly_the_listed_routes() {
        let app = router(Arc::new(ShardSlot::default()));
        let served = |path: &str| {
            let method = if path == routes::KEEPER_HEALTH {
                "GET"
            } else {
                "POST"
            };
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.expect("response");
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .expect("body");
                !String::from_utf8_lossy(&bytes).contains("unknown route")
            }
        };
        for path in routes::KEEPER_ROUTES {
            assert!(served(path).await, "{path} is listed but not served");
        }
        assert!(
            !served("/v1/store/keep").await,
            "an unlisted route is served"
        );
    }

    #[test]
    fn debug_never_shows_the_shard() {
        let slot = ShardSlot::default();
        slot.store(Zeroizing::new([42; 32]));
        assert_eq!(format!("{slot:?}"), "ShardSlot([REDACTED])");
    }
}
