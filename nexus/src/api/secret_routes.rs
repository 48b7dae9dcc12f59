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
use crate::error::ServiceError;
use crate::secrets::{SecretPath, VersionChange};
use crate::service::Nexus;
use crate::validate;

pub async fn secrets(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    RawQuery(query): RawQuery,
    request: Result<Bytes, BytesRejection>,
) -> Response {
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
            let path = SecretPath::parse(&request.path).map_err(ServiceError::invalid)?;
            validate::values(&request.values).map_err(ServiceError::invalid)?;
            let version = nexus
                .secrets()
                .put(&path, &request.values, request.cas, audit.caller())
                .await?;
            Ok(ok(PutSecretResponse { version }))
        }
        Action::Get => {
            let request: GetSecretRequest = parse(&bytes)?;
            audit
                .authorize(nexus, &request.path, Permission::Read)
                .await?;
            let path = SecretPath::parse(&request.path).map_err(ServiceError::invalid)?;
            validate::versions(&[request.version]).map_err(ServiceError::invalid)?;
            Ok(ok(nexus.secrets().get(&path, request.version).await?))
        }
        Action::Delete | Action::Undelete | Action::Destroy => {
            let request: VersionsRequest = parse(&bytes)?;
            audit
                .authorize(nexus, &request.path, Permission::Write)
                .await?;
            let change = match action {
                Action::Delete => VersionChange::Delete,
                Action::Undelete => VersionChange::Undelete,
                _ => VersionChange::Destroy,
            };
            let path = SecretPath::parse(&request.path).map_err(ServiceError::invalid)?;
            validate::versions(&request.versions).map_err(ServiceError::invalid)?;
            nexus
                .secrets()
                .change(change, &path, &request.versions)
                .await?;
            Ok(ok(Empty {}))
        }
        Action::List => {
            let _: Empty = parse(&bytes)?;
            nexus.root()?;
            audit.decision = "allow";
            let keys = nexus.secrets().list().await?;
            if !nexus.access.is_superuser(audit.caller()) {
                nexus.policies().current().await?;
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
        let path = SecretPath::parse(&request.path).map_err(ServiceError::invalid)?;
        Ok(ok(nexus.secrets().metadata(&path).await?))
    }
    .await;
    audit.finish(outcome)
}
