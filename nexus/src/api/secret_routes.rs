//! `/v1/store/secrets` and `/v1/store/secrets/metadata`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_api::model::{
    Empty, GetSecretRequest, ListSecretsRequest, ListSecretsResponse, PatchSecretRequest,
    PutMetadataRequest, PutSecretRequest, PutSecretResponse, SecretPathRequest, Values,
    VersionsRequest,
};
use nexus_api::routes::{self, Action};

use super::endpoint::{Body, Call, Endpoint};
use super::{ApiError, invalid, ok, parse};
use crate::error::ServiceError;
use crate::secrets::{MetadataChange, SecretPath, VersionChange};
use crate::validate;

/// `/v1/store/secrets`: put, get, patch, delete, undelete, destroy, list.
pub(super) struct Secrets;

/// A secrets request as parsed, before authorisation.
pub(super) enum SecretRequest {
    Put(PutSecretRequest),
    Patch(PatchSecretRequest),
    Get(GetSecretRequest),
    Change(VersionChange, VersionsRequest),
    List(ListSecretsRequest),
}

/// A secrets request checked after authorisation: what the core takes.
pub(super) enum Checked {
    Put {
        path: SecretPath,
        values: Values,
        cas: Option<u64>,
    },
    Patch {
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
    /// SPIKE's list: every readable path in one answer.
    ListAll,
    /// A page of the readable paths under a prefix.
    ListPage {
        prefix: String,
        cursor: Option<String>,
        limit: usize,
    },
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
            SecretRequest::Patch(patch) => {
                let path = SecretPath::parse(&patch.path).map_err(invalid)?;
                validate::values(&patch.values).map_err(invalid)?;
                Checked::Patch {
                    path,
                    values: patch.values,
                    cas: patch.cas,
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
            SecretRequest::List(list) => check_list(list)?,
        })
    }
}

/// A listing's parameters: none is SPIKE's list; a prefix and a cursor are (parts of)
/// paths, and the page size is bounded.
fn check_list(list: ListSecretsRequest) -> Result<Checked, ApiError> {
    let ListSecretsRequest {
        prefix,
        limit,
        cursor,
    } = list;
    if prefix.is_none() && limit.is_none() && cursor.is_none() {
        return Ok(Checked::ListAll);
    }
    let prefix = prefix.unwrap_or_default();
    if !prefix.is_empty() {
        SecretPath::parse(&prefix).map_err(invalid)?;
    }
    if let Some(cursor) = &cursor {
        SecretPath::parse(cursor).map_err(invalid)?;
    }
    let limit = match limit {
        Some(limit) => validate::list_limit(limit).map_err(invalid)?,
        None => usize::try_from(validate::MAX_LIST_LIMIT).unwrap_or(1000),
    };
    Ok(Checked::ListPage {
        prefix,
        cursor,
        limit,
    })
}

impl Body for SecretRequest {
    fn read(action: Option<Action>, body: Bytes, _: &HeaderMap) -> Result<Self, ApiError> {
        let change = |change| Ok(SecretRequest::Change(change, parse(&body)?));
        match action.unwrap_or(Action::Put) {
            Action::Put => Ok(SecretRequest::Put(parse(&body)?)),
            Action::Patch => Ok(SecretRequest::Patch(parse(&body)?)),
            Action::Get => Ok(SecretRequest::Get(parse(&body)?)),
            Action::Delete => change(VersionChange::Delete),
            Action::Undelete => change(VersionChange::Undelete),
            Action::Destroy => change(VersionChange::Destroy),
            Action::List => Ok(SecretRequest::List(parse(&body)?)),
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
            SecretRequest::Patch(patch) => Some(&patch.path),
            SecretRequest::Get(get) => Some(&get.path),
            SecretRequest::Change(_, request) => Some(&request.path),
            SecretRequest::List(_) => None,
        }
    }

    async fn serve(call: Call<'_, SecretRequest>) -> Result<Response, ApiError> {
        let (secrets, grant) = (call.nexus.secrets(), call.grant);
        Ok(match Self::check(call.request)? {
            Checked::Put { path, values, cas } => {
                let version = secrets.put(&grant, &path, &values, cas).await?;
                ok(PutSecretResponse { version })
            }
            Checked::Patch { path, values, cas } => {
                let version = secrets.patch(&grant, &path, &values, cas).await?;
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
            Checked::ListAll => {
                let mut keys = KeysJson::default();
                secrets.list_each(&grant, |path| keys.push(path)).await?;
                json_ok(keys.finish()?)
            }
            Checked::ListPage {
                prefix,
                cursor,
                limit,
            } => {
                let (keys, next_cursor) = secrets
                    .list_page(&grant, &prefix, cursor.as_deref(), limit)
                    .await?;
                ok(ListSecretsResponse { keys, next_cursor })
            }
        })
    }
}

/// SPIKE's list answer, `{"keys":[...]}`, written path by path as the service hands them
/// over: the bytes `ok(ListSecretsResponse { keys, next_cursor: None })` gives, without a
/// `Vec<String>` of every path first (100,000 of them were most of a full list's memory).
#[derive(Default)]
struct KeysJson {
    /// The body after `{"keys":[`.
    body: Vec<u8>,
    /// How many paths are in it.
    count: usize,
    /// The first failure to write a path (none on a `Vec`, which never refuses bytes).
    error: Option<serde_json::Error>,
}

impl KeysJson {
    const OPEN: &'static [u8] = br#"{"keys":["#;
    const CLOSE: &'static [u8] = b"]}";

    fn push(&mut self, path: &str) {
        if self.count == 0 {
            self.body.extend_from_slice(Self::OPEN);
        } else {
            self.body.push(b',');
        }
        self.count += 1;
        // serde_json's own string escaping, as the typed answer would have it.
        if let Err(error) = serde_json::to_writer(&mut self.body, path) {
            self.error.get_or_insert(error);
        }
    }

    /// The whole body.
    fn finish(mut self) -> Result<Vec<u8>, ApiError> {
        if let Some(error) = self.error {
            tracing::error!(%error, "writing the list answer failed");
            return Err(ServiceError::Internal.into());
        }
        if self.count == 0 {
            self.body.extend_from_slice(Self::OPEN);
        }
        self.body.extend_from_slice(Self::CLOSE);
        Ok(self.body)
    }
}

/// `200 OK` with a JSON `body` already written, typed as `axum::Json` types its answers.
fn json_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `/v1/store/secrets/metadata`: get, update (no action), delete.
pub(super) struct Metadata;

/// A metadata request as parsed, before authorisation.
pub(super) enum MetadataRequest {
    Get(GetSecretRequest),
    Put(PutMetadataRequest),
    Delete(SecretPathRequest),
}

/// A metadata request checked after authorisation.
pub(super) enum CheckedMetadata {
    Get(SecretPath),
    Put(SecretPath, MetadataChange),
    Delete(SecretPath),
}

impl Metadata {
    /// Checks the path and the metadata fields (after authorisation).
    pub(super) fn check(request: MetadataRequest) -> Result<CheckedMetadata, ApiError> {
        Ok(match request {
            MetadataRequest::Get(get) => {
                CheckedMetadata::Get(SecretPath::parse(&get.path).map_err(invalid)?)
            }
            MetadataRequest::Delete(delete) => {
                CheckedMetadata::Delete(SecretPath::parse(&delete.path).map_err(invalid)?)
            }
            MetadataRequest::Put(put) => {
                let path = SecretPath::parse(&put.path).map_err(invalid)?;
                let change = MetadataChange {
                    max_versions: put
                        .max_versions
                        .map(validate::max_versions)
                        .transpose()
                        .map_err(invalid)?,
                    cas_required: put.cas_required,
                    delete_version_after: put
                        .delete_version_after
                        .as_ref()
                        .map(validate::delete_version_after)
                        .transpose()
                        .map_err(invalid)?,
                    custom_metadata: match put.custom_metadata {
                        Some(map) => {
                            validate::custom_metadata(&map).map_err(invalid)?;
                            Some(map)
                        }
                        None => None,
                    },
                };
                CheckedMetadata::Put(path, change)
            }
        })
    }
}

impl Body for MetadataRequest {
    fn read(action: Option<Action>, body: Bytes, _: &HeaderMap) -> Result<Self, ApiError> {
        match action.unwrap_or(Action::Put) {
            Action::Put => Ok(MetadataRequest::Put(parse(&body)?)),
            Action::Delete => Ok(MetadataRequest::Delete(parse(&body)?)),
            // Only get is left: the table refuses every other action before the body.
            _ => Ok(MetadataRequest::Get(parse(&body)?)),
        }
    }
}

impl Endpoint for Metadata {
    const ROUTE: &'static str = routes::SECRETS_METADATA;
    const TAKES_ACTION: bool = true;
    type Request = MetadataRequest;

    fn path(request: &MetadataRequest) -> Option<&str> {
        Some(match request {
            MetadataRequest::Get(get) => get.path.as_str(),
            MetadataRequest::Put(put) => put.path.as_str(),
            MetadataRequest::Delete(delete) => delete.path.as_str(),
        })
    }

    fn unsupported(_: Option<Action>) -> ApiError {
        ApiError::bad_request("metadata supports only get, delete and an update (no action)")
    }

    async fn serve(call: Call<'_, MetadataRequest>) -> Result<Response, ApiError> {
        let (secrets, grant) = (call.nexus.secrets(), call.grant);
        Ok(match Self::check(call.request)? {
            CheckedMetadata::Get(path) => ok(secrets.metadata(&grant, &path).await?),
            CheckedMetadata::Put(path, change) => {
                secrets.put_metadata(&grant, &path, change).await?;
                ok(Empty {})
            }
            CheckedMetadata::Delete(path) => {
                secrets
                    .change(&grant, VersionChange::Destroy, &path, &[])
                    .await?;
                ok(Empty {})
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed answer's bytes, as `ok` writes them.
    fn typed(keys: &[&str]) -> Vec<u8> {
        let answer = ListSecretsResponse {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            next_cursor: None,
        };
        serde_json::to_vec(&answer).expect("typed answer")
    }

    #[test]
    fn the_written_list_is_byte_for_byte_the_typed_answer() {
        let cases: [&[&str]; 4] = [
            &[],
            &["a"],
            &["app/db", "app/db/creds", "z-_.@~+=:,9"],
            // Never a valid path, but escaped as serde_json escapes it all the same.
            &["quote\"back\\slash", "tab\tnew\nline\u{1}", "é/ü"],
        ];
        for keys in cases {
            let mut written = KeysJson::default();
            for key in keys {
                written.push(key);
            }
            let written = written.finish().expect("written");
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&typed(keys)),
                "{keys:?}"
            );
        }
    }
}
