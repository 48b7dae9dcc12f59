//! `/v1/cipher/encrypt` and `/v1/cipher/decrypt` (SPIKE's encryption as a service), in JSON
//! mode or, with `Content-Type: application/octet-stream`, stream mode. Allowed for the Pilot
//! superuser, SPIKE's lite workloads, and callers granted `execute` on
//! `spike/system/cipher/exec` ([`crate::authz::TABLE`]).

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_api::ErrorCode;
use nexus_api::model::{
    CIPHER_VERSION, Ciphertext, DecryptResponse, EncryptRequest, MAX_CIPHERTEXT_BYTES,
    MAX_PLAINTEXT_BYTES, OCTET_STREAM,
};
use nexus_api::routes::{self, Action};
use nexus_crypto::{NONCE_LEN, Sealed};

use super::endpoint::{Body, Call, Endpoint};
use super::{ApiError, ok, parse};
use crate::cipher;

/// A cipher request: the body, read whole, in one of the two modes.
pub(super) struct CipherRequest {
    bytes: Bytes,
    stream: bool,
}

/// What to encrypt, checked.
pub(super) enum Plaintext {
    Stream(Bytes),
    Json(EncryptRequest),
}

/// What to decrypt, checked.
pub(super) struct Opening {
    sealed: Sealed,
    stream: bool,
}

impl Body for CipherRequest {
    fn read(_: Option<Action>, body: Bytes, headers: &HeaderMap) -> Result<Self, ApiError> {
        let stream = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with(OCTET_STREAM));
        Ok(CipherRequest {
            bytes: body,
            stream,
        })
    }
}

/// `/v1/cipher/encrypt`.
pub(super) struct Encrypt;

impl Encrypt {
    /// Parses and bounds the plaintext.
    pub(super) fn check(request: CipherRequest) -> Result<Plaintext, ApiError> {
        if request.stream {
            check_len("plaintext", request.bytes.len(), MAX_PLAINTEXT_BYTES)?;
            return Ok(Plaintext::Stream(request.bytes));
        }
        let json: EncryptRequest = parse(&request.bytes)?;
        check_len("plaintext", json.plaintext.len(), MAX_PLAINTEXT_BYTES)?;
        Ok(Plaintext::Json(json))
    }
}

impl Endpoint for Encrypt {
    const ROUTE: &'static str = routes::CIPHER_ENCRYPT;
    type Request = CipherRequest;

    async fn serve(call: Call<'_, CipherRequest>) -> Result<Response, ApiError> {
        let key = cipher::key(call.nexus, &call.grant).await?;
        Ok(match Self::check(call.request)? {
            Plaintext::Stream(bytes) => octets(cipher::encrypt(&key, &bytes)?.to_bytes()),
            Plaintext::Json(request) => {
                let sealed = cipher::encrypt(&key, &request.plaintext)?;
                ok(Ciphertext {
                    version: CIPHER_VERSION,
                    nonce: sealed.nonce.to_vec(),
                    ciphertext: sealed.ciphertext,
                    algorithm: None,
                })
            }
        })
    }
}

/// `/v1/cipher/decrypt`.
pub(super) struct Decrypt;

impl Decrypt {
    /// Parses and bounds the ciphertext.
    pub(super) fn check(request: CipherRequest) -> Result<Opening, ApiError> {
        if request.stream {
            check_len("ciphertext", request.bytes.len(), MAX_CIPHERTEXT_BYTES)?;
            return Ok(Opening {
                sealed: cipher::parse(&request.bytes)?,
                stream: true,
            });
        }
        let json: Ciphertext = parse(&request.bytes)?;
        if json.version != CIPHER_VERSION {
            return Err(ApiError::bad_request(format!(
                "unsupported ciphertext version {} (only {CIPHER_VERSION})",
                json.version
            )));
        }
        let nonce: [u8; NONCE_LEN] = json.nonce.as_slice().try_into().map_err(|_| {
            ApiError::bad_request(format!(
                "the nonce must be {NONCE_LEN} bytes, not {}",
                json.nonce.len()
            ))
        })?;
        check_len("ciphertext", json.ciphertext.len(), MAX_CIPHERTEXT_BYTES)?;
        Ok(Opening {
            sealed: Sealed {
                nonce,
                ciphertext: json.ciphertext,
            },
            stream: false,
        })
    }
}

impl Endpoint for Decrypt {
    const ROUTE: &'static str = routes::CIPHER_DECRYPT;
    type Request = CipherRequest;

    async fn serve(call: Call<'_, CipherRequest>) -> Result<Response, ApiError> {
        let key = cipher::key(call.nexus, &call.grant).await?;
        let opening = Self::check(call.request)?;
        let plaintext = cipher::decrypt(&key, &opening.sealed)?;
        Ok(if opening.stream {
            octets(plaintext.to_vec())
        } else {
            ok(DecryptResponse { plaintext })
        })
    }
}

fn check_len(what: &str, len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the {what} is {len} bytes; the cipher takes at most {max}"),
        ));
    }
    Ok(())
}

fn octets(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, OCTET_STREAM)],
        bytes,
    )
        .into_response()
}
