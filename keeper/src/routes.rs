//! The keeper's HTTP API, SPIKE-compatible: `POST /v1/store/contribute` stores the shard,
//! `POST /v1/store/shard` returns it, `GET /healthz` reports whether one is held; and
//! `POST /v1/store/retain` (not in SPIKE) forgets the shards of older generations. Each
//! shard belongs to a generation of the keeper set (`generation` in the body; absent, as
//! SPIKE sends it, 0), so a rekey stages the next generation beside the current one. Only Nexus
//! reaches these routes: the TLS handshake refuses every other SPIFFE ID, and the router is
//! built from [`crate::authz::TABLE`], each route checked again before its handler.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on, post};
use axum::{Extension, Json, Router};
use nexus_api::model::{ParsedShard, RetainRequest, ShardBody, ShardRequest};
use nexus_api::routes;
use policies::RoleDomains;
use serde_json::json;
use spiffe::X509Source;

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

/// The keeper's routes over a shard slot, for Nexus where `roles` recognises it (its own
/// trust domain, and those of `--nexus-trust-domains`) and, for a federated one, while
/// `bundles` still holds its trust domain's bundle: those of [`TABLE`], and nothing else.
pub fn router(slot: Arc<ShardSlot>, roles: RoleDomains, bundles: Option<X509Source>) -> Router {
    let roles = Arc::new(roles);
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
            roles: roles.clone(),
            rule: *rule,
            bundles: bundles.clone(),
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
        routes::KEEPER_RETAIN => Some(post(retain)),
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
    let ParsedShard { value, generation } =
        ShardBody::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if value.iter().all(|b| *b == 0) {
        return Err(ApiError::bad_request("an all-zero shard is not a shard"));
    }
    slot.store(&grant, generation, value);
    tracing::info!(generation, "shard stored");
    Ok(no_store(StatusCode::OK, json!({})))
}

/// Reads a small JSON request; an empty body is the default one (SPIKE sends `{}`).
fn small_request<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed request: {e}")))
}

async fn shard(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
    Extension(grant): Extension<Grant>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ShardRequest { generation } = small_request(&body)?;
    let value = slot.get(&grant, generation).ok_or_else(|| {
        ApiError::bad_request(if generation == 0 {
            "this keeper holds no shard".to_owned()
        } else {
            format!("this keeper holds no shard of generation {generation}")
        })
    })?;
    let mut answer = json!({ "shard": value.to_vec() });
    if generation != 0 {
        answer["generation"] = json!(generation);
    }
    Ok(no_store(StatusCode::OK, answer))
}

async fn retain(
    axum::extract::State(slot): axum::extract::State<Arc<ShardSlot>>,
    Extension(grant): Extension<Grant>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Option<RetainRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(small_request(&body)?)
    };
    let RetainRequest {
        generation,
        exactly,
    } = body.ok_or_else(|| ApiError::bad_request("name the generation to retain"))?;
    let forgotten = slot.retain(&grant, generation, exactly);
    if forgotten > 0 {
        tracing::info!(
            generation,
            forgotten,
            "forgot the shards of other generations"
        );
    }
    Ok(no_store(
        StatusCode::OK,
        json!({ "forgotten": forgotten, "generations": slot.generations() }),
    ))
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
    use zeroize::Zeroizing;

    use super::*;
    use crate::shard::SHARD_LEN;

    const NEXUS: &str = "spiffe://td/spike/nexus";

    fn app() -> (Router, Arc<ShardSlot>) {
        let slot = Arc::new(ShardSlot::default());
        (router(slot.clone(), RoleDomains::local("td"), None), slot)
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
    async fn a_federated_nexus_is_served_only_from_a_listed_trust_domain() {
        let slot = Arc::new(ShardSlot::default());
        let roles = RoleDomains::local("td").with_foreign(policies::Role::Nexus, ["other"]);
        let app = router(slot.clone(), roles, None);
        let health = "/healthz";
        for (caller, allowed) in [
            ("spiffe://td/spike/nexus", true),
            ("spiffe://other/spike/nexus", true),
            ("spiffe://other/spike/nexus/replica-2", true),
            ("spiffe://third/spike/nexus", false),
            ("spiffe://other/spike/keeper", false),
            ("spiffe://other/spike/pilot/role/superuser", false),
        ] {
            let (status, body) = call_as(&app, Some(caller), "GET", health, "").await;
            if allowed {
                assert_eq!(status, StatusCode::OK, "{caller}: {body}");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{caller}");
                assert_eq!(body["err"], "access_unauthorized");
            }
        }
    }

    #[tokio::test]
    async fn generations_are_kept_apart_and_retain_forgets_the_others() {
        let (app, slot) = app();
        let old: Vec<u8> = vec![1; 32];
        let new: Vec<u8> = vec![2; 32];
        // SPIKE's shape: no generation, which is generation 0.
        call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": old }).to_string(),
        )
        .await;
        let (status, _) = call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": new, "generation": 1 }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(slot.generations(), vec![0, 1]);
        let (_, body) = call(&app, "/v1/store/shard", "{}").await;
        assert_eq!(
            body["shard"],
            json!(old),
            "the staged shard does not replace 0's"
        );
        assert!(body.get("generation").is_none(), "SPIKE's answer shape");
        let (_, body) = call(&app, "/v1/store/shard", "").await;
        assert_eq!(body["shard"], json!(old));
        let (_, body) = call(&app, "/v1/store/shard", r#"{"generation":1}"#).await;
        assert_eq!(
            (&body["shard"], &body["generation"]),
            (&json!(new), &json!(1))
        );
        let (status, body) = call(&app, "/v1/store/shard", r#"{"generation":2}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["message"],
            "this keeper holds no shard of generation 2"
        );
        let (status, _) = call(&app, "/v1/store/shard", r#"{"generation":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        for bad in ["", "{}", r#"{"generation":-1}"#] {
            let (status, _) = call(&app, "/v1/store/retain", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert_eq!(
            slot.generations(),
            vec![0, 1],
            "a refused retain forgets nothing"
        );
        let (status, body) = call(&app, "/v1/store/retain", r#"{"generation":0}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({ "forgotten": 0, "generations": [0, 1] }),
            "a later (staged) generation stays"
        );
        let (_, body) = call(
            &app,
            "/v1/store/retain",
            r#"{"generation":0,"exactly":true}"#,
        )
        .await;
        assert_eq!(
            body,
            json!({ "forgotten": 1, "generations": [0] }),
            "unstaged"
        );
        call(
            &app,
            "/v1/store/contribute",
            &json!({ "shard": new, "generation": 1 }).to_string(),
        )
        .await;
        let (status, body) = call(&app, "/v1/store/retain", r#"{"generation":1}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "forgotten": 1, "generations": [1] }));
        let (status, _) = call(&app, "/v1/store/shard", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "generation 0 is gone");
        // A keeper left out of the new set forgets everything.
        call(&app, "/v1/store/retain", r#"{"generation":5}"#).await;
        assert!(!slot.is_full());
        let (_, body) = call_as(&app, Some(NEXUS), "GET", "/healthz", "").await;
        assert_eq!(body["hasShard"], false);
    }

    #[test]
    fn at_most_three_generations_are_held() {
        let slot = ShardSlot::default();
        let grant = Grant::for_tests();
        for generation in [4, 1, 7, 9] {
            slot.store(
                &grant,
                generation,
                Zeroizing::new([generation as u8; SHARD_LEN]),
            );
        }
        assert_eq!(
            slot.generations(),
            vec![4, 7, 9],
            "the lowest is pushed out"
        );
        assert_eq!(slot.get(&grant, 7).map(|v| v[0]), Some(7));
        slot.store(&grant, 7, Zeroizing::new([70; SHARD_LEN]));
        assert_eq!(
            slot.get(&grant, 7).map(|v| v[0]),
            Some(70),
            "replaced in place"
        );
        assert_eq!(slot.retain(&grant, 7, false), 1, "4 goes, 7 and 9 stay");
        assert_eq!(slot.generations(), vec![7, 9]);
        assert_eq!(slot.retain(&grant, 9, false), 1);
        assert_eq!(slot.generations(), vec![9]);
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
