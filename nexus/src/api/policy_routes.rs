//! `/v1/acl/policy`: the Pilot superuser manages policies; others need `read`, `write` or
//! `list` on the reserved path `spike/system/acl` ([`crate::authz::TABLE`]).

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use nexus_api::model::{
    Empty, ListPoliciesRequest, ListPoliciesResponse, PolicyIdRequest, PutPolicyRequest,
};
use nexus_api::routes::{self, Action};

use super::endpoint::{Body, Call, Endpoint};
use super::{ApiError, invalid, ok, parse};
use crate::error::ServiceError;
use crate::policy::{NewPolicy, PolicyName};

/// `/v1/acl/policy`: put, get, delete, list.
pub(super) struct Policy;

/// A policy request as parsed, before authorisation.
pub(super) enum PolicyRequest {
    Put(PutPolicyRequest),
    Get(PolicyIdRequest),
    Delete(PolicyIdRequest),
    List(ListPoliciesRequest),
}

impl Body for PolicyRequest {
    fn read(action: Option<Action>, body: Bytes, _: &HeaderMap) -> Result<Self, ApiError> {
        match action {
            Some(Action::Get) => Ok(PolicyRequest::Get(parse(&body)?)),
            Some(Action::Delete) => Ok(PolicyRequest::Delete(parse(&body)?)),
            Some(Action::List) => Ok(PolicyRequest::List(parse(&body)?)),
            Some(Action::Put) => Ok(PolicyRequest::Put(parse(&body)?)),
            other => Err(Policy::unsupported(other)),
        }
    }
}

impl Endpoint for Policy {
    const ROUTE: &'static str = routes::POLICY;
    const TAKES_ACTION: bool = true;
    type Request = PolicyRequest;

    fn unsupported(action: Option<Action>) -> ApiError {
        ApiError::bad_request(format!(
            "policies have no {:?} action",
            action.and_then(Action::as_query).unwrap_or_default()
        ))
    }

    async fn serve(call: Call<'_, PolicyRequest>) -> Result<Response, ApiError> {
        let (policies, grant, audit) = (call.nexus.policies(), call.grant, call.audit);
        Ok(match call.request {
            PolicyRequest::Put(request) => {
                audit.target.clone_from(&request.name);
                let policy = NewPolicy::parse(request).map_err(invalid)?;
                policies.put(&grant, &policy).await?;
                ok(Empty {})
            }
            PolicyRequest::Get(request) => {
                audit.target.clone_from(&request.id);
                ok(policies.get(&grant, &existing(&request.id)?).await?)
            }
            PolicyRequest::Delete(request) => {
                audit.target.clone_from(&request.id);
                policies.delete(&grant, &existing(&request.id)?).await?;
                ok(Empty {})
            }
            PolicyRequest::List(filter) => ok(ListPoliciesResponse {
                policies: policies.list(&grant, &filter).await?,
            }),
        })
    }
}

/// The name of a policy that may exist: one that is not a valid name was never stored.
pub(super) fn existing(name: &str) -> Result<PolicyName, ServiceError> {
    PolicyName::parse(name).map_err(|_| crate::policy::not_found(name))
}
