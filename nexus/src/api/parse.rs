//! [`parse_request`]: what Nexus does with a request body before it touches anything, as
//! one function of bytes, so fuzzing can reach every parser and check of the API.

use axum::body::Bytes;
use axum::http::HeaderMap;
use nexus_api::routes::{self, Action};

use super::endpoint::{Body, Endpoint};
use super::policy_routes::{self, PolicyRequest};
use super::{ApiError, authz, cipher_routes, invalid, operator_routes, secret_routes};
use crate::policy::NewPolicy;

/// Parses and checks `body` as a JSON request for `action` on `route` (`None` for routes
/// without actions) exactly as Nexus does before and after authorisation, without a Nexus:
/// `Ok` or the error (status, code, message) a caller allowed everything would get, short of
/// what depends on stored state.
pub fn parse_request(route: &str, action: Option<Action>, body: &[u8]) -> Result<(), ApiError> {
    match route {
        routes::SECRETS => checked::<secret_routes::Secrets>(action, body, |request| {
            secret_routes::Secrets::check(request).map(drop)
        }),
        routes::SECRETS_METADATA => checked::<secret_routes::Metadata>(action, body, |request| {
            secret_routes::Metadata::check(request).map(drop)
        }),
        routes::POLICY => checked::<policy_routes::Policy>(action, body, |request| match request {
            PolicyRequest::Put(put) => NewPolicy::parse(put).map(drop).map_err(invalid),
            PolicyRequest::Get(id) | PolicyRequest::Delete(id) => policy_routes::existing(&id.id)
                .map(drop)
                .map_err(ApiError::from),
            PolicyRequest::List(_) => Ok(()),
        }),
        routes::RECOVER => checked::<operator_routes::Recover>(action, body, |_| Ok(())),
        routes::RESTORE => checked::<operator_routes::Restore>(action, body, |_| Ok(())),
        routes::ROTATE => checked::<operator_routes::Rotate>(action, body, |_| Ok(())),
        routes::SEAL => checked::<operator_routes::Seal>(action, body, |_| Ok(())),
        routes::UNSEAL => checked::<operator_routes::Unseal>(action, body, |_| Ok(())),
        routes::REKEY => checked::<operator_routes::Rekey>(action, body, |request| {
            crate::keys::rekey::validate(&request.keepers, request.threshold)
                .map(drop)
                .map_err(invalid)
        }),
        routes::CIPHER_ENCRYPT => checked::<cipher_routes::Encrypt>(action, body, |request| {
            cipher_routes::Encrypt::check(request).map(drop)
        }),
        routes::CIPHER_DECRYPT => checked::<cipher_routes::Decrypt>(action, body, |request| {
            cipher_routes::Decrypt::check(request).map(drop)
        }),
        routes::STATUS => Ok(()),
        _ => Err(ApiError::bad_request("unknown route")),
    }
}

/// The skeleton's steps for endpoint `E`, authorisation excepted, then `check`.
fn checked<E: Endpoint>(
    action: Option<Action>,
    body: &[u8],
    check: impl FnOnce(E::Request) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let action = if E::TAKES_ACTION { action } else { None };
    authz::requirement(E::ROUTE, action).ok_or_else(|| E::unsupported(action))?;
    let body = Bytes::copy_from_slice(body);
    check(E::Request::read(action, body, &HeaderMap::new())?)
}

#[cfg(test)]
mod tests {
    use nexus_api::ErrorCode;

    use super::*;

    #[test]
    fn bodies_are_parsed_and_checked_as_the_routes_do() {
        let code = |route, action, body: &str| {
            parse_request(route, action, body.as_bytes()).map_err(|e| e.code)
        };
        let put = Some(Action::Put);
        assert_eq!(
            code(routes::SECRETS, put, r#"{"path":"a","values":{"k":"v"}}"#),
            Ok(())
        );
        assert_eq!(
            code(routes::SECRETS, put, r#"{"path":"a b","values":{"k":"v"}}"#),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(code(routes::SECRETS, put, "{"), Err(ErrorCode::BadRequest));
        assert_eq!(
            code(routes::SECRETS_METADATA, Some(Action::List), "{}"),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(routes::POLICY, Some(Action::Get), r#"{"id":"no/such"}"#),
            Err(ErrorCode::NotFound)
        );
        assert_eq!(
            code(
                routes::POLICY,
                put,
                r#"{"name":"p","spiffeidPattern":"(","pathPattern":".*","permissions":["read"]}"#
            ),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(
            code(routes::RESTORE, None, r#"{"id":1,"shard":[1]}"#),
            Ok(())
        );
        assert_eq!(
            code(
                routes::CIPHER_DECRYPT,
                None,
                r#"{"version":2,"nonce":"","ciphertext":""}"#
            ),
            Err(ErrorCode::BadRequest)
        );
        assert_eq!(code("/v1/nope", None, "{}"), Err(ErrorCode::BadRequest));
    }

    /// A route added to the table and not here would be fuzzed as an unknown route.
    #[test]
    fn every_route_of_the_table_is_parsed() {
        for rule in crate::authz::TABLE {
            if let Err(e) = parse_request(rule.route, rule.action, b"{}") {
                assert_ne!(
                    e.message, "unknown route",
                    "{} {:?}",
                    rule.route, rule.action
                );
            }
        }
    }
}
