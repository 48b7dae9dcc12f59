//! A typed client for Nexus over SPIFFE mTLS, for `spike`, `spike exec` and applications.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let source = identity::workload::x509_source(None, std::time::Duration::from_secs(10)).await?;
//! let nexus = nexus_api::Client::connect(source, "https://127.0.0.1:8553", "spike.ist")?;
//! let secret = nexus.get_secret("db/password", 0).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use identity::https_client::{HttpsClient, HttpsError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spiffe::{SpiffeId, TrustDomain, X509Source};
use zeroize::Zeroizing;

use crate::error::{ErrorBody, ErrorCode};
use crate::model::*;
use crate::routes::{self, Action};

/// How long a call may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nexus answered with an error.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: ErrorCode,
        /// Nexus's message (or the code when it sent none).
        message: String,
    },
    /// Nexus could not be reached, or the TLS handshake failed (for example because the
    /// server is not Nexus or does not trust our SVID).
    #[error("cannot reach Nexus: {0}")]
    Transport(#[from] HttpsError),
    /// The answer was not what the API promises.
    #[error("unexpected answer from Nexus: {0}")]
    Decode(String),
    /// The client could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl ClientError {
    /// The API error code, if Nexus answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A Nexus client.
#[derive(Debug, Clone)]
pub struct Client {
    http: HttpsClient,
    base: String,
}

impl Client {
    /// A client over an existing HTTPS client; `base_url` is `https://host:port`.
    pub fn new(http: HttpsClient, base_url: &str) -> Result<Self, ClientError> {
        HttpsClient::parse_url(base_url)?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// A client presenting the SVID from `source` to the Nexus of `trust_domain` (its SVID must
    /// be `spiffe://<trust_domain>/spike/nexus`, or below it).
    pub fn connect(
        source: X509Source,
        base_url: &str,
        trust_domain: &str,
    ) -> Result<Self, ClientError> {
        let td = TrustDomain::new(trust_domain).map_err(|e| {
            ClientError::Setup(format!("invalid trust domain {trust_domain:?}: {e}"))
        })?;
        let td_name = td.to_string();
        let is_nexus = move |peer: &SpiffeId| {
            let id = peer.to_string();
            let nexus = format!("spiffe://{td_name}/spike/nexus");
            id == nexus || id.starts_with(&format!("{nexus}/"))
        };
        let tls = identity::workload::client_config(source, td, is_nexus)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Client::new(HttpsClient::new(tls, DEFAULT_TIMEOUT), base_url)
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: &str,
        action: Action,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let url = format!("{}{}", self.base, action.url(route));
        let uri = HttpsClient::parse_url(&url)?;
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        let (status, body) = self.http.post_json(uri, Bytes::from(body)).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()));
        }
        Err(api_error(status.as_u16(), &body))
    }

    /// POSTs raw bytes (`application/octet-stream`) to `route`; the raw answer.
    async fn call_bytes(&self, route: &str, body: &[u8]) -> Result<Bytes, ClientError> {
        let uri = HttpsClient::parse_url(&format!("{}{route}", self.base))?;
        let (status, answer) = self
            .http
            .post(
                uri,
                crate::model::OCTET_STREAM,
                Bytes::copy_from_slice(body),
            )
            .await?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(api_error(status.as_u16(), &answer))
    }

    /// Encrypts `plaintext` with Nexus's cipher key (stream mode); returns
    /// `0x01 ‖ nonce ‖ ciphertext`.
    pub async fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self
            .call_bytes(routes::CIPHER_ENCRYPT, plaintext)
            .await?
            .to_vec())
    }

    /// Decrypts what [`encrypt`](Self::encrypt) returned (stream mode).
    pub async fn decrypt(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        Ok(Zeroizing::new(
            self.call_bytes(routes::CIPHER_DECRYPT, sealed)
                .await?
                .to_vec(),
        ))
    }

    /// Encrypts in JSON mode.
    pub async fn encrypt_json(&self, request: &EncryptRequest) -> Result<Ciphertext, ClientError> {
        self.call(routes::CIPHER_ENCRYPT, Action::Put, request)
            .await
    }

    /// Decrypts in JSON mode.
    pub async fn decrypt_json(&self, request: &Ciphertext) -> Result<DecryptResponse, ClientError> {
        self.call(routes::CIPHER_DECRYPT, Action::Put, request)
            .await
    }

    /// Writes a new version of `path`; `cas` makes it conditional on the current version.
    /// Returns the new version.
    pub async fn put_secret(
        &self,
        path: &str,
        values: Values,
        cas: Option<u64>,
    ) -> Result<u64, ClientError> {
        let request = PutSecretRequest {
            path: path.to_owned(),
            values,
            cas,
        };
        let response: PutSecretResponse = self.call(routes::SECRETS, Action::Put, &request).await?;
        Ok(response.version)
    }

    /// Reads `version` of `path` (0: the current one).
    pub async fn get_secret(
        &self,
        path: &str,
        version: u64,
    ) -> Result<GetSecretResponse, ClientError> {
        let request = GetSecretRequest {
            path: path.to_owned(),
            version,
        };
        self.call(routes::SECRETS, Action::Get, &request).await
    }

    async fn versions(
        &self,
        action: Action,
        path: &str,
        versions: &[u64],
    ) -> Result<(), ClientError> {
        let request = VersionsRequest {
            path: path.to_owned(),
            versions: versions.to_vec(),
        };
        let _: Empty = self.call(routes::SECRETS, action, &request).await?;
        Ok(())
    }

    /// Soft-deletes versions (none: the current one).
    pub async fn delete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions(Action::Delete, path, versions).await
    }

    /// Restores soft-deleted versions (none: the current one).
    pub async fn undelete_secret(&self, path: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions(Action::Undelete, path, versions).await
    }

    /// Destroys versions for good (none: the whole secret with its metadata).
    pub async fn destroy_secret(&self, path: &str, versions: &[u64]) -> Result<(), ClientError> {
        self.versions(Action::Destroy, path, versions).await
    }

    /// The paths the caller may read, sorted.
    pub async fn list_secrets(&self) -> Result<Vec<String>, ClientError> {
        let response: ListSecretsResponse =
            self.call(routes::SECRETS, Action::List, &Empty {}).await?;
        Ok(response.keys)
    }

    /// One page of the paths the caller may read that start with `prefix`, after `cursor`
    /// (a previous page's `nextCursor`), at most `limit` (none: all of them).
    pub async fn list_secrets_page(
        &self,
        request: &ListSecretsRequest,
    ) -> Result<ListSecretsResponse, ClientError> {
        self.call(routes::SECRETS, Action::List, request).await
    }

    /// Writes a new version of `path`: its current version with `values` merged in (keys
    /// given replace or add, others are kept); returns its number.
    pub async fn patch_secret(
        &self,
        path: &str,
        values: Values,
        cas: Option<u64>,
    ) -> Result<u64, ClientError> {
        let request = PatchSecretRequest {
            path: path.to_owned(),
            values,
            cas,
        };
        let response: PutSecretResponse =
            self.call(routes::SECRETS, Action::Patch, &request).await?;
        Ok(response.version)
    }

    /// Updates the metadata of `path` (fields left `None` are kept).
    pub async fn put_secret_metadata(
        &self,
        request: &PutMetadataRequest,
    ) -> Result<(), ClientError> {
        let _: Empty = self
            .call(routes::SECRETS_METADATA, Action::Put, request)
            .await?;
        Ok(())
    }

    /// Deletes the secret at `path` with every version and its metadata, for good.
    pub async fn delete_secret_metadata(&self, path: &str) -> Result<(), ClientError> {
        let request = SecretPathRequest {
            path: path.to_owned(),
        };
        let _: Empty = self
            .call(routes::SECRETS_METADATA, Action::Delete, &request)
            .await?;
        Ok(())
    }

    /// Metadata of `path`.
    pub async fn secret_metadata(&self, path: &str) -> Result<MetadataResponse, ClientError> {
        let request = GetSecretRequest {
            path: path.to_owned(),
            version: 0,
        };
        self.call(routes::SECRETS_METADATA, Action::Get, &request)
            .await
    }

    /// Creates or replaces a policy.
    pub async fn put_policy(&self, policy: &PutPolicyRequest) -> Result<(), ClientError> {
        let _: Empty = self.call(routes::POLICY, Action::Put, policy).await?;
        Ok(())
    }

    /// Reads a policy by name.
    pub async fn get_policy(&self, name: &str) -> Result<PolicyResponse, ClientError> {
        let request = PolicyIdRequest {
            id: name.to_owned(),
        };
        self.call(routes::POLICY, Action::Get, &request).await
    }

    /// Deletes a policy by name.
    pub async fn delete_policy(&self, name: &str) -> Result<(), ClientError> {
        let request = PolicyIdRequest {
            id: name.to_owned(),
        };
        let _: Empty = self.call(routes::POLICY, Action::Delete, &request).await?;
        Ok(())
    }

    /// Lists policies, optionally only those with exactly these patterns.
    pub async fn list_policies(
        &self,
        filter: &ListPoliciesRequest,
    ) -> Result<Vec<PolicyResponse>, ClientError> {
        let response: ListPoliciesResponse =
            self.call(routes::POLICY, Action::List, filter).await?;
        Ok(response.policies)
    }

    /// Every recovery shard (break-glass; only the recover role).
    pub async fn recover(&self) -> Result<RecoverResponse, ClientError> {
        self.call(routes::RECOVER, Action::Put, &Empty {}).await
    }

    /// Rotates the root key (only the superuser).
    pub async fn rotate(&self) -> Result<RotateResponse, ClientError> {
        self.call(routes::ROTATE, Action::Put, &Empty {}).await
    }

    /// Rekeys: a new keeper set and threshold, optionally with a new root key (only the
    /// superuser).
    pub async fn rekey(&self, request: &RekeyRequest) -> Result<RekeyResponse, ClientError> {
        self.call(routes::REKEY, Action::Put, request).await
    }

    /// Seals Nexus: its root key leaves memory until [`Client::unseal`] (only the
    /// superuser). Answers the status after the seal.
    pub async fn seal(&self) -> Result<StatusResponse, ClientError> {
        self.call(routes::SEAL, Action::Put, &Empty {}).await
    }

    /// Lifts an operator's seal; Nexus rebuilds its root key from the keepers (only the
    /// superuser). Answers the status once ready, or after a few seconds if it is not.
    pub async fn unseal(&self) -> Result<StatusResponse, ClientError> {
        self.call(routes::UNSEAL, Action::Put, &Empty {}).await
    }

    /// Submits one recovery shard (break-glass; only the restore role).
    pub async fn restore(&self, id: u8, shard: &[u8]) -> Result<RestoreResponse, ClientError> {
        let request = RestoreRequest {
            id,
            shard: shard.to_vec(),
        };
        self.call(routes::RESTORE, Action::Put, &request).await
    }

    /// Nexus's lifecycle state and keeper reachability.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.call(routes::STATUS, Action::Put, &Empty {}).await
    }
}

/// The error an answer with `status` and `body` means.
fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => ClientError::Api {
            status,
            code: ErrorCode::parse(&error.err),
            message: if error.message.is_empty() {
                error.err
            } else {
                error.message
            },
        },
        Err(_) => ClientError::Api {
            status,
            code: ErrorCode::from_status(status),
            message: format!("HTTP {status}"),
        },
    }
}
