//! `/v1/cipher/encrypt` and `/v1/cipher/decrypt` (SPIKE's encryption as a service), in JSON
//! mode or, with `Content-Type: application/octet-stream`, stream mode. Allowed for the Pilot
//! superuser, SPIKE's lite workloads, and callers granted `execute` on
//! `spike/system/cipher/exec`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity::http::CallerId;
use nexus_api::ErrorCode;
use nexus_api::model::{
    CIPHER_VERSION, Ciphertext, DecryptResponse, EncryptRequest, MAX_CIPHERTEXT_BYTES,
    MAX_PLAINTEXT_BYTES, OCTET_STREAM,
};
use nexus_api::routes;
use nexus_crypto::{DataKey, NONCE_LEN, Sealed};
use policies::{Permission, Role, SYSTEM_CIPHER_EXEC_PATH};

use super::audit::Audit;
use super::{ApiError, body, ok, parse};
use crate::cipher;
use crate::service::Nexus;

pub async fn encrypt(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::CIPHER_ENCRYPT);
    let outcome = async {
        let bytes = body(request)?;
        let key = authorize(&nexus, &mut audit).await?;
        if is_stream(&headers) {
            check_len("plaintext", bytes.len(), MAX_PLAINTEXT_BYTES)?;
            let sealed = cipher::encrypt(&key, &bytes)?;
            return Ok(octets(sealed.to_bytes()));
        }
        let request: EncryptRequest = parse(&bytes)?;
        check_len("plaintext", request.plaintext.len(), MAX_PLAINTEXT_BYTES)?;
        let sealed = cipher::encrypt(&key, &request.plaintext)?;
        Ok(ok(Ciphertext {
            version: CIPHER_VERSION,
            nonce: sealed.nonce.to_vec(),
            ciphertext: sealed.ciphertext,
            algorithm: None,
        }))
    }
    .await;
    audit.finish(outcome)
}

pub async fn decrypt(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    headers: HeaderMap,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::CIPHER_DECRYPT);
    let outcome = async {
        let bytes = body(request)?;
        let key = authorize(&nexus, &mut audit).await?;
        if is_stream(&headers) {
            check_len("ciphertext", bytes.len(), MAX_CIPHERTEXT_BYTES)?;
            let plaintext = cipher::decrypt(&key, &cipher::parse(&bytes)?)?;
            return Ok(octets(plaintext.to_vec()));
        }
        let request: Ciphertext = parse(&bytes)?;
        if request.version != CIPHER_VERSION {
            return Err(ApiError::bad_request(format!(
                "unsupported ciphertext version {} (only {CIPHER_VERSION})",
                request.version
            )));
        }
        let nonce: [u8; NONCE_LEN] = request.nonce.as_slice().try_into().map_err(|_| {
            ApiError::bad_request(format!(
                "the nonce must be {NONCE_LEN} bytes, not {}",
                request.nonce.len()
            ))
        })?;
        check_len("ciphertext", request.ciphertext.len(), MAX_CIPHERTEXT_BYTES)?;
        let sealed = Sealed {
            nonce,
            ciphertext: request.ciphertext,
        };
        let plaintext = cipher::decrypt(&key, &sealed)?;
        Ok(ok(DecryptResponse { plaintext }))
    }
    .await;
    audit.finish(outcome)
}

/// The cipher key, if the caller may use it: the lite role always may, others need
/// `execute` on the cipher's system path.
async fn authorize(nexus: &Nexus, audit: &mut Audit<'_>) -> Result<Arc<DataKey>, ApiError> {
    if nexus.access.role(audit.caller()) == Some(Role::Lite) {
        audit.target = SYSTEM_CIPHER_EXEC_PATH.to_owned();
        nexus.root()?;
        audit.decision = "allow";
    } else {
        audit
            .authorize(nexus, SYSTEM_CIPHER_EXEC_PATH, Permission::Execute)
            .await?;
    }
    Ok(cipher::key(nexus).await?)
}

fn is_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with(OCTET_STREAM))
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
