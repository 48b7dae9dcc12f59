//! [`Authorize`]: the tower layer in front of a listener's gRPC routes. Every request passes
//! [`super::authorize`] before it reaches a handler; a refusal is answered here as a gRPC
//! status and the handler never runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;

use crate::state::ServerState;

/// Wraps routes in [`Authorize`].
#[derive(Clone)]
pub struct AuthorizeLayer {
    state: Arc<ServerState>,
}

impl AuthorizeLayer {
    /// Judges callers with `state` (the datastore holds the attested agents).
    pub fn new(state: Arc<ServerState>) -> Self {
        AuthorizeLayer { state }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            state: self.state.clone(),
        }
    }
}

/// gRPC routes that serve only what the authorisation table allows the caller.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    state: Arc<ServerState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            match super::authorize(&state, &path, request.extensions_mut()).await {
                Ok(()) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
