//! `/v1/store/secrets` and `/v1/store/secrets/metadata`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use identity::http::CallerId;
use nexus_api::model::{
    Empty, GetSecretRequest, ListSecretsResponse, PutSecretRequest, PutSecretResponse,
    VersionsRequest,
};
use nexus_api::routes::{self, Action};
use policies::Permission;

use super::audit::Audit;
use super::{ApiError, action, body, ok, parse};
use crate::service::Nexus;

pub async fn secrets(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    RawQuery(query): RawQuery,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = caller.to_string();
    let mut audit = Audit::new(&caller, routes::SECRETS);
    let outcome = dispatch(&nexus, &mut audit, query.as_deref(), request).await;
    audit.finish(outcome)
}

async fn dispatch(
    nexus: &Nexus,
    audit: &mut Audit<'_>,
    query: Option<&str>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let action = action(query)?;
    audit.action = Some(action);
    let bytes = body(request)?;
    match action {
        Action::Put => {
            let request: PutSecretRequest = parse(&bytes)?;
            audit
                .authorize(nexus, &request.path, Permission::Write)
                .await?;
            let version = nexus.put_secret(&request, audit.caller()).await?;
            Ok(ok(PutSecretResponse { version }))
        }
        Action::Get => {
            let request: GetSecretRequest = parse(&bytes)?;
            audit
                .authorize(nexus, &request.path, Permission::Read)
                .await?;
            Ok(ok(nexus.get_secret(&request.path, request.version).await?))
        }
        Action::Delete | Action::Undelete | Action::Destroy => {
            let request: VersionsRequest = parse(&bytes)?;
            audit
                .authorize(nexus, &request.path, Permission::Write)
                .await?;
            match action {
                Action::Delete => {
                    nexus
                        .delete_secret(&request.path, &request.versions)
                        .await?
                }
                Action::Undelete => {
                    nexus
                        .undelete_secret(&request.path, &request.versions)
                        .await?
                }
                _ => {
                    nexus
                        .destroy_secret(&request.path, &request.versions)
                        .await?
                }
            }
            Ok(ok(Empty {}))
        }
        Action::List => {
            let _: Empty = parse(&bytes)?;
            nexus.root()?;
            audit.decision = "allow";
            let keys = nexus.list_secrets().await?;
            if !nexus.access.is_superuser(audit.caller()) {
                nexus.current_policies().await?;
            }
            let keys = nexus.access.readable(audit.caller(), keys);
            Ok(ok(ListSecretsResponse { keys }))
        }
    }
}

pub async fn metadata(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    RawQuery(query): RawQuery,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = caller.to_string();
    let mut audit = Audit::new(&caller, routes::SECRETS_METADATA);
    let outcome = async {
        let action = action(query.as_deref())?;
        audit.action = Some(action);
        if action != Action::Get {
            return Err(ApiError::bad_request("metadata supports only action=get"));
        }
        let request: GetSecretRequest = parse(&body(request)?)?;
        audit
            .authorize(&nexus, &request.path, Permission::Read)
            .await?;
        Ok(ok(nexus.metadata(&request.path).await?))
    }
    .await;
    audit.finish(outcome)
}
