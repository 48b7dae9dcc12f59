//! OIDC discovery for JWT-SVIDs, as SPIRE's oidc-discovery-provider but built into the server:
//! `GET /.well-known/openid-configuration` names the issuer and `jwks_uri`, and `GET /keys`
//! answers the JWT keys of the trust domain's bundle (every active and prepared JWT authority,
//! of this server and of any other sharing the datastore) as a JWK Set, `kid`, `alg: ES256`
//! and `use: sig` on each. Both are read from the datastore on every request, so a rotation
//! shows at once; any OIDC relying party (cloud IAM, API gateways, JWT libraries) can then
//! verify JWT-SVIDs without talking SPIFFE.
//!
//! Requests for a `Host` outside the configured domains get 404, as SPIRE's provider does. The
//! issuer is the server's `jwt_issuer` when set (the `iss` JWT-SVIDs carry), otherwise
//! `<scheme>://<host>`. Served over TLS with a configured certificate (re-read when renewed,
//! [`crate::serving_cert`]), or as plain HTTP for a
//! TLS-terminating proxy, both within the same bounds as every listener (`common_net`,
//! `[server.limits.oidc_discovery]`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use spire_proto::bundle_format;
use tokio::net::TcpListener;

use crate::state::ServerState;

/// What the handlers share.
struct Oidc {
    state: Arc<ServerState>,
    domains: Vec<String>,
    scheme: &'static str,
}

/// Serves discovery for `domains` on `listener` until `shutdown` resolves: over `tls` (a
/// [`crate::serving_cert`] config), or plain HTTP when `None`.
pub async fn serve(
    state: Arc<ServerState>,
    domains: Vec<String>,
    tls: Option<rustls::ServerConfig>,
    listener: TcpListener,
    options: identity::http::ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(Oidc {
        state,
        domains,
        scheme: if tls.is_some() { "https" } else { "http" },
    });
    match tls {
        Some(tls) => identity::http::serve(listener, Arc::new(tls), app, options, shutdown).await,
        None => {
            let incoming =
                common_net::tcp::tcp_incoming(listener, &options.limits, options.metrics.clone());
            common_net::HttpServer::new(options.limits, options.metrics)
                .serve(incoming, app, shutdown)
                .await;
        }
    }
}

fn router(oidc: Oidc) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/keys", get(keys))
        .with_state(Arc::new(oidc))
}

/// The request's host (without port), if it is one of the configured domains.
fn allowed_host(oidc: &Oidc, request: &Request) -> Option<String> {
    let raw = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    let authority: axum::http::uri::Authority = raw.parse().ok()?;
    let host = authority.host().to_ascii_lowercase();
    oidc.domains
        .contains(&host)
        .then(|| authority.as_str().to_ascii_lowercase())
}

fn not_allowed() -> Response {
    (StatusCode::NOT_FOUND, "domain not allowed\n").into_response()
}

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn discovery(State(oidc): State<Arc<Oidc>>, request: Request) -> Response {
    let Some(host) = allowed_host(&oidc, &request) else {
        return not_allowed();
    };
    let base = format!("{}://{host}", oidc.scheme);
    let issuer = oidc
        .state
        .config
        .jwt_issuer
        .clone()
        .unwrap_or_else(|| base.clone());
    json_response(&json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/keys"),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": [],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn keys(State(oidc): State<Arc<Oidc>>, request: Request) -> Response {
    if allowed_host(&oidc, &request).is_none() {
        return not_allowed();
    }
    match jwks(&oidc.state).await {
        Ok(jwks) => json_response(&jwks),
        Err(e) => {
            tracing::error!(error = %e, "cannot serve the OIDC keys");
            (StatusCode::SERVICE_UNAVAILABLE, "keys unavailable\n").into_response()
        }
    }
}

/// The unexpired JWT keys of the trust domain's bundle as an OIDC JWK Set.
async fn jwks(state: &ServerState) -> anyhow::Result<Value> {
    let bundle = state.bundle().await?;
    let now = state.clock.unix_seconds();
    let live: Vec<_> = bundle
        .jwt_authorities
        .into_iter()
        .filter(|k| k.expires_at == 0 || k.expires_at > now)
        .collect();
    let mut jwks: Value = serde_json::from_slice(&bundle_format::to_jwt_jwks(&live)?)?;
    if let Some(keys) = jwks["keys"].as_array_mut() {
        for key in keys {
            key["alg"] = json!("ES256");
            key["use"] = json!("sig");
        }
    }
    Ok(jwks)
}
