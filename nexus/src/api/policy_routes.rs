//! `/v1/acl/policy`: the Pilot superuser manages policies; others need `read`, `write` or
//! `list` on the reserved path `spike/system/acl`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use identity::http::CallerId;
use nexus_api::model::{
    Empty, ListPoliciesRequest, ListPoliciesResponse, PolicyIdRequest, PutPolicyRequest,
};
use nexus_api::routes::{self, Action};
use policies::{Permission, SYSTEM_ACL_PATH};

use super::audit::Audit;
use super::{ApiError, action, body, ok, parse};
use crate::error::ServiceError;
use crate::policy::{NewPolicy, PolicyName};
use crate::service::Nexus;

pub async fn policy(
    State(nexus): State<Arc<Nexus>>,
    CallerId(caller): CallerId,
    RawQuery(query): RawQuery,
    request: Result<Bytes, BytesRejection>,
) -> Response {
    let mut audit = Audit::new(&caller, routes::POLICY);
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
            let request: PutPolicyRequest = parse(&bytes)?;
            audit
                .authorize(nexus, SYSTEM_ACL_PATH, Permission::Write)
                .await?;
            audit.target = request.name.clone();
            let policy = NewPolicy::parse(request).map_err(ServiceError::invalid)?;
            nexus.policies().put(&policy).await?;
            Ok(ok(Empty {}))
        }
        Action::Get => {
            let request: PolicyIdRequest = parse(&bytes)?;
            audit
                .authorize(nexus, SYSTEM_ACL_PATH, Permission::Read)
                .await?;
            audit.target = request.id.clone();
            Ok(ok(nexus.policies().get(&existing(&request.id)?).await?))
        }
        Action::Delete => {
            let request: PolicyIdRequest = parse(&bytes)?;
            audit
                .authorize(nexus, SYSTEM_ACL_PATH, Permission::Write)
                .await?;
            audit.target = request.id.clone();
            nexus.policies().delete(&existing(&request.id)?).await?;
            Ok(ok(Empty {}))
        }
        Action::List => {
            let filter: ListPoliciesRequest = parse(&bytes)?;
            audit
                .authorize(nexus, SYSTEM_ACL_PATH, Permission::List)
                .await?;
            let policies = nexus.policies().list(&filter).await?;
            Ok(ok(ListPoliciesResponse { policies }))
        }
        Action::Undelete | Action::Destroy => Err(ApiError::bad_request(format!(
            "policies have no {:?} action",
            action.as_query().unwrap_or_default()
        ))),
    }
}

/// The name of a policy that may exist: one that is not a valid name was never stored.
fn existing(name: &str) -> Result<PolicyName, ServiceError> {
    PolicyName::parse(name).map_err(|_| crate::policy::not_found(name))
}
