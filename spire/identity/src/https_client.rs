//! The client side of [`crate::http`]: JSON-over-HTTPS calls with SPIFFE mTLS, for Nexus
//! talking to keepers and for pilot and applications talking to Nexus.
//!
//! Connections are pooled and kept alive (hyper's client with `hyper-rustls`), so a service
//! reading secrets in a loop pays for one handshake, not one per request. The peer is
//! authorised by the SPIFFE ID check inside the rustls config, not by host name.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::failure::HandshakeFailure;

/// The largest response body a client accepts.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why a call did not produce an HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The URL is not an `https://host:port/...` URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS handshake failed (including the SPIFFE ID checks on either side), for
    /// `reason`; `message` is the whole chain of causes.
    #[error("{message}")]
    Handshake {
        /// Why, as a type (callers explain by it; they never search `message`).
        reason: HandshakeFailure,
        /// What hyper and rustls said.
        message: String,
    },
    /// Connecting or the exchange failed (no TLS failure in the chain of causes).
    #[error("{0}")]
    Transport(String),
    /// No response within the deadline.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// A pooled HTTPS client presenting this process's SVID.
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client over `tls` (for example from [`crate::workload::client_config`]); every call
    /// fails after `timeout`.
    pub fn new(mut tls: rustls::ClientConfig, timeout: Duration) -> Self {
        // hyper-rustls sets ALPN from the HTTP versions enabled below (and panics if the
        // config names protocols already, as `svid_tls::client_config`'s does for gRPC).
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        HttpsClient { client, timeout }
    }

    /// Parses and checks an `https://` URL.
    pub fn parse_url(url: &str) -> Result<Uri, HttpsError> {
        let invalid = |reason: &str| HttpsError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("the scheme must be https"));
        }
        if uri.host().is_none() {
            return Err(invalid("a host is required"));
        }
        Ok(uri)
    }

    /// POSTs `body` as JSON to `uri` and returns the status and body of the response.
    pub async fn post_json(
        &self,
        uri: Uri,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), HttpsError> {
        self.post(uri, "application/json", body).await
    }

    /// POSTs `body` with `content_type` to `uri` and returns the status and body of the
    /// response.
    pub async fn post(
        &self,
        uri: Uri,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), HttpsError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| HttpsError::Transport(e.to_string()))?;
        self.send(request).await
    }

    /// GETs `uri` and returns the status and body of the response.
    pub async fn get(&self, uri: Uri) -> Result<(StatusCode, Bytes), HttpsError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| HttpsError::Transport(e.to_string()))?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), HttpsError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                match HandshakeFailure::find(&e) {
                    Some(reason) => HttpsError::Handshake {
                        reason,
                        message: error_chain(&e),
                    },
                    None => HttpsError::Transport(error_chain(&e)),
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| HttpsError::Transport(format!("reading the response: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpsError::Timeout(self.timeout))?
    }
}

/// hyper's errors hide the cause (refused connection, failed handshake) in their source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls() {
        assert!(HttpsClient::parse_url("https://127.0.0.1:8553").is_ok());
        assert!(HttpsClient::parse_url("http://127.0.0.1:8553").is_err());
        assert!(HttpsClient::parse_url("not a url").is_err());
        assert!(HttpsClient::parse_url("/v1/store").is_err());
    }
}
