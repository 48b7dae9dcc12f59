//! The server's gRPC services: [`agent`] for attested agents over mTLS, [`admin`] for the CLI
//! over the local Unix socket. [`authz`] stands in front of both: one table says who may
//! call each method, and a handler runs only with the proof it hands out.

pub mod admin;
pub mod agent;
pub mod authz;

use tonic::Status;

use crate::ca::CaError;
use crate::datastore::DatastoreError;

/// Maps a datastore failure to a gRPC status without leaking connection details.
pub(crate) fn datastore_status(e: DatastoreError) -> Status {
    match e {
        DatastoreError::NotFound(what) => Status::not_found(what),
        DatastoreError::AlreadyExists(what) => Status::already_exists(what),
        other => {
            tracing::error!(error = %other, "datastore failure");
            Status::unavailable("datastore unavailable; see the server log")
        }
    }
}

/// Maps a signing failure: bad input from the caller, or an internal fault.
pub(crate) fn ca_status(e: CaError) -> Status {
    match e {
        CaError::InvalidCsr(m) => Status::invalid_argument(format!("invalid CSR: {m}")),
        CaError::InvalidSpiffeId(m)
        | CaError::InvalidDnsName(m)
        | CaError::InvalidTtl(m)
        | CaError::InvalidAudience(m) => Status::invalid_argument(m),
        e @ CaError::WrongTrustDomain { .. } => Status::invalid_argument(e.to_string()),
        other => {
            tracing::error!(error = %other, "signing failed");
            Status::internal("signing failed; see the server log")
        }
    }
}
