//! The JWT profile of the Workload API: which identities get a token (`FetchJWTSVID`), the
//! JWT bundles (`FetchJWTBundles`) and server-side validation (`ValidateJWTSVID`). The
//! handlers in [`super::api`] attest the caller and then call these.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use spiffe::SpiffeId;
use spire_proto::bundle_format;
use spire_proto::jwt_svid::{self, JwtSvidError};
use spire_proto::server as pb;
use spire_proto::workload as wl;
use tonic::Status;

use super::api::{NO_IDENTITY, td_key};
use crate::jwt_svids::{JwtSvidFetchError, JwtSvids};
use crate::manager::{Snapshot, WorkloadSvid};

/// The entries to sign tokens for: one per distinct SPIFFE ID among the caller's SVIDs (in
/// entry order, so the first is the default identity), or only `spiffe_id` when the caller
/// asked for one. PermissionDenied when nothing is left.
pub fn identities(
    svids: &[&std::sync::Arc<WorkloadSvid>],
    spiffe_id: &str,
) -> Result<Vec<pb::Entry>, Status> {
    let wanted = if spiffe_id.is_empty() {
        None
    } else {
        let id = SpiffeId::new(spiffe_id).map_err(|e| {
            Status::invalid_argument(format!("invalid spiffe_id {spiffe_id:?}: {e}"))
        })?;
        Some(id.to_string())
    };
    let mut seen = HashSet::new();
    let entries: Vec<pb::Entry> = svids
        .iter()
        .map(|s| &s.entry)
        .filter(|e| wanted.as_ref().is_none_or(|w| &e.spiffe_id == w))
        .filter(|e| seen.insert(e.spiffe_id.clone()))
        .cloned()
        .collect();
    if entries.is_empty() {
        return Err(Status::permission_denied(NO_IDENTITY));
    }
    Ok(entries)
}

/// Checks the audience of a `FetchJWTSVID` request (InvalidArgument, SPIRE's wording).
pub fn check_audience(audience: &[String]) -> Result<(), Status> {
    if audience.is_empty() {
        return Err(Status::invalid_argument("audience must be specified"));
    }
    jwt_svid::check_audience(audience).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// One token per identity, signed (or taken from the cache) by `jwt`.
pub async fn fetch_svids(
    jwt: &JwtSvids,
    entries: &[pb::Entry],
    audience: &[String],
) -> Result<wl::JwtsvidResponse, Status> {
    let mut svids = Vec::with_capacity(entries.len());
    for entry in entries {
        let token = jwt.fetch(entry, audience).await.map_err(|e| match e {
            JwtSvidFetchError::Rejected(m) => Status::invalid_argument(m),
            JwtSvidFetchError::NotAuthorized(_) => Status::permission_denied(NO_IDENTITY),
            other => {
                tracing::warn!(error = %other, entry_id = %entry.id, "JWT-SVID signing failed");
                Status::unavailable(other.to_string())
            }
        })?;
        svids.push(wl::Jwtsvid {
            spiffe_id: entry.spiffe_id.clone(),
            svid: token,
            hint: entry.hint.clone(),
        });
    }
    Ok(wl::JwtsvidResponse { svids })
}

/// The trust domain's JWT authorities as a JWK Set, keyed by trust domain ID.
pub fn bundles_response(
    snapshot: &Snapshot,
    svids: &[&std::sync::Arc<WorkloadSvid>],
) -> wl::JwtBundlesResponse {
    let mut bundles = HashMap::from([(td_key(snapshot), jwks(&snapshot.jwt_keys))]);
    for b in snapshot.federated_for(svids) {
        bundles.insert(
            format!("spiffe://{}", b.trust_domain),
            jwks(&b.jwt_authorities),
        );
    }
    wl::JwtBundlesResponse { bundles }
}

/// A JWK Set of `keys`. The server checked every key it stored; one that still cannot be
/// rendered is dropped rather than served, which clients read as "no valid keys".
fn jwks(keys: &[spire_proto::server::JwtKey]) -> Vec<u8> {
    bundle_format::to_jwt_jwks(keys).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render a JWT bundle");
        br#"{"keys":[]}"#.to_vec()
    })
}

/// Validates `request` against the JWT authorities of the token's trust domain: ours, or one
/// the caller's entries federate with.
pub fn validate(
    snapshot: &Snapshot,
    svids: &[&std::sync::Arc<WorkloadSvid>],
    request: &wl::ValidateJwtsvidRequest,
    now: i64,
) -> Result<wl::ValidateJwtsvidResponse, Status> {
    let federated = snapshot.federated_for(svids);
    if request.audience.is_empty() {
        return Err(Status::invalid_argument("audience must be specified"));
    }
    if request.svid.is_empty() {
        return Err(Status::invalid_argument("svid must be specified"));
    }
    let validated = jwt_svid::validate(&request.svid, &request.audience, now, |td, kid| {
        let keys = if td == &snapshot.trust_domain {
            &snapshot.jwt_keys
        } else {
            &federated
                .iter()
                .find(|b| b.trust_domain == td.as_str())?
                .jwt_authorities
        };
        keys.iter()
            .find(|k| k.key_id == kid)
            .map(|k| k.public_key.clone())
    })
    .map_err(|e: JwtSvidError| Status::invalid_argument(e.to_string()))?;
    Ok(wl::ValidateJwtsvidResponse {
        spiffe_id: validated.spiffe_id.to_string(),
        claims: Some(to_struct(validated.claims)),
    })
}

/// JSON claims as a `google.protobuf.Struct`.
fn to_struct(map: serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
