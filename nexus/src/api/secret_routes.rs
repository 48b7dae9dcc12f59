//! `/v1/store/secrets` and `/v1/store/secrets/metadata`.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use nexus_api::model::{
    Empty, GetSecretRequest, ListSecretsResponse, PutSecretRequest, PutSecretResponse, Values,
    VersionsRequest,
};
use nexus_api::routes::{self, Action};

use super::endpoint::{Body, Call, Endpoint};
use super::{ApiError, invalid, ok, parse};
use crate::secrets::{SecretPath, VersionChange};
use crate::validate;

/// `/v1/store/secrets`: put, get, delete, undelete, destroy, list.
pub(super) struct Secrets;

/// A secrets request as parsed, before authorisation.
pub(super) enum SecretRequest {
    Put(PutSecretRequest),
    Get(GetSecretRequest),
    Change(VersionChange, VersionsRequest),
    List,
}

/// A secrets request checked after authorisation: what the core takes.
pub(super) enum Checked {
    Put {
        path: SecretPath,
        values: Values,
        cas: Option<u64>,
    },
    Get {
        path: SecretPath,
        version: u64,
    },
    Change {
        change: VersionChange,
        path: SecretPath,
        versions: Vec<u64>,
    },
    List,
}

impl Secrets {
    /// Checks the path, values and versions the request names (after authorisation, so a
    /// caller learns nothing about a path it may not touch).
    pub(super) fn check(request: SecretRequest) -> Result<Checked, ApiError> {
        Ok(match request {
            SecretRequest::Put(put) => {
                let path = SecretPath::parse(&put.path).map_err(invalid)?;
                validate::values(&put.values).map_err(invalid)?;
                Checked::Put {
                    path,
                    values: put.values,
                    cas: put.cas,
                }
            }
            SecretRequest::Get(get) => {
                let path = SecretPath::parse(&get.path).map_err(invalid)?;
                validate::versions(&[get.version]).map_err(invalid)?;
                Checked::Get {
                    path,
                    version: get.version,
                }
            }
            SecretRequest::Change(change, request) => {
                let path = SecretPath::parse(&request.path).map_err(invalid)?;
                validate::versions(&request.versions).map_err(invalid)?;
                Checked::Change {
                    change,
                    path,
                    versions: request.versions,
                }
            }
            SecretRequest::List => Checked::List,
        })
    }
}

impl Body for SecretRequest {
    fn read(action: Option<Action>, body: Bytes, _: &HeaderMap) -> Result<Self, ApiError> {
        let change = |change| Ok(SecretRequest::Change(change, parse(&body)?));
        match action.unwrap_or(Action::Put) {
            Action::Put => Ok(SecretRequest::Put(parse(&body)?)),
            Action::Get => Ok(SecretRequest::Get(parse(&body)?)),
            Action::Delete => change(VersionChange::Delete),
            Action::Undelete => change(VersionChange::Undelete),
            Action::Destroy => change(VersionChange::Destroy),
            Action::List => {
                let _: Empty = parse(&body)?;
                Ok(SecretRequest::List)
            }
        }
    }
}

impl Endpoint for Secrets {
    const ROUTE: &'static str = routes::SECRETS;
    const TAKES_ACTION: bool = true;
    type Request = SecretRequest;

    fn path(request: &SecretRequest) -> Option<&str> {
        match request {
            SecretRequest::Put(put) => Some(&put.path),
            SecretRequest::Get(get) => Some(&get.path),
            SecretRequest::Change(_, request) => Some(&request.path),
            SecretRequest::List => None,
        }
    }

    async fn serve(call: Call<'_, SecretRequest>) -> Result<Response, ApiError> {
        let (secrets, grant) = (call.nexus.secrets(), call.grant);
        Ok(match Self::check(call.request)? {
            Checked::Put { path, values, cas } => {
                let version = secrets.put(&grant, &path, &values, cas).await?;
                ok(PutSecretResponse { version })
            }
            Checked::Get { path, version } => ok(secrets.get(&grant, &path, version).await?),
            Checked::Change {
                change,
                path,
                versions,
            } => {
                secrets.change(&grant, change, &path, &versions).await?;
                ok(Empty {})
            }
            Checked::List => ok(ListSecretsResponse {
                keys: secrets.list(&grant).await?,
            }),
        })
    }
}

/// `/v1/store/secrets/metadata`: get.
pub(super) struct Metadata;

impl Endpoint for Metadata {
    const ROUTE: &'static str = routes::SECRETS_METADATA;
    const TAKES_ACTION: bool = true;
    type Request = GetSecretRequest;

    fn path(request: &GetSecretRequest) -> Option<&str> {
        Some(&request.path)
    }

    fn unsupported(_: Option<Action>) -> ApiError {
        ApiError::bad_request("metadata supports only action=get")
    }

    async fn serve(call: Call<'_, GetSecretRequest>) -> Result<Response, ApiError> {
        let path = SecretPath::parse(&call.request.path).map_err(invalid)?;
        Ok(ok(call
            .nexus
            .secrets()
            .metadata(&call.grant, &path)
            .await?))
    }
}
