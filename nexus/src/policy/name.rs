//! A policy's name and a policy as put, parsed once where the request arrives so the core
//! never stores or looks up a name nobody checked.

use std::fmt;

use nexus_api::model::PutPolicyRequest;
use policies::{CompiledPolicy, Permission, Policy, PolicyError};

/// A valid policy name (the `policies` crate's rule: 1 to 250 characters from
/// `[a-zA-Z0-9 _-]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyName(String);

impl PolicyName {
    /// Parses `name`.
    pub fn parse(name: &str) -> Result<Self, PolicyError> {
        policies::validate_name(name)?;
        Ok(PolicyName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A policy to create or replace: every field checked and both patterns compiled once.
#[derive(Debug, Clone)]
pub struct NewPolicy {
    name: PolicyName,
    request: PutPolicyRequest,
    compiled: CompiledPolicy,
}

impl NewPolicy {
    /// Checks `request` as a policy: permissions first, then name, patterns and the
    /// permission count (the order of [`Policy::compile`]), so the first problem is named.
    pub fn parse(request: PutPolicyRequest) -> Result<Self, PolicyError> {
        let compiled = to_policy(&request)?.compile()?;
        let name = PolicyName(request.name.clone());
        Ok(NewPolicy {
            name,
            request,
            compiled,
        })
    }

    /// The policy compiled, as the access cache holds it.
    pub fn compiled(&self) -> &CompiledPolicy {
        &self.compiled
    }

    /// Its name.
    pub fn name(&self) -> &PolicyName {
        &self.name
    }

    /// The policy as it is sealed and stored.
    pub fn request(&self) -> &PutPolicyRequest {
        &self.request
    }
}

/// The policy a stored or requested body describes (not yet validated).
pub(crate) fn to_policy(request: &PutPolicyRequest) -> Result<Policy, PolicyError> {
    let permissions = request
        .permissions
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy::new(
        request.name.clone(),
        request.spiffe_id_pattern.clone(),
        request.path_pattern.clone(),
        permissions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, permissions: &[&str]) -> PutPolicyRequest {
        PutPolicyRequest {
            name: name.into(),
            spiffe_id_pattern: "^spiffe://td/app$".into(),
            path_pattern: "^db/.*$".into(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn names_and_policies_are_checked_once() {
        assert_eq!(
            PolicyName::parse("db readers").map(|n| n.to_string()),
            Ok("db readers".into())
        );
        assert_eq!(PolicyName::parse(""), Err(PolicyError::NameLength(0)));
        assert_eq!(
            PolicyName::parse("a/b"),
            Err(PolicyError::NameCharacter('/'))
        );

        let policy = NewPolicy::parse(request("readers", &["read"])).expect("valid");
        assert_eq!(policy.name().as_str(), "readers");
        // An unknown permission is named before a bad name, as the policies crate orders it.
        assert!(matches!(
            NewPolicy::parse(request("a/b", &["fly"])),
            Err(PolicyError::UnknownPermission(p)) if p == "fly"
        ));
        assert!(matches!(
            NewPolicy::parse(request("a/b", &["read"])),
            Err(PolicyError::NameCharacter('/'))
        ));
        assert!(matches!(
            NewPolicy::parse(request("ok", &[])),
            Err(PolicyError::NoPermissions)
        ));
    }
}
