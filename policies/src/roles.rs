//! The system's own role identities.
//!
//! Nexus, Keeper, the Pilot superuser/recover/restore roles, the bootstrap
//! job and SPIKE's "lite" workloads (cipher only) are authorised by route (the server knows which endpoints each role
//! may call), never by policy. Letting a policy grant something to a role ID
//! would blur that boundary, so [`PolicySet::check`](crate::PolicySet::check)
//! denies every role caller, even under a `.*` catch-all policy.
//!
//! An ID is a role if, in the given trust domain, it equals the role's ID or
//! extends it with further path segments (`/...`). `spike/nexus-fake` is *not*
//! the Nexus role: role matching is by whole path segments.

use std::fmt;

/// One of the built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `spiffe://<td>/spike/nexus`
    Nexus,
    /// `spiffe://<td>/spike/keeper`
    Keeper,
    /// `spiffe://<td>/spike/pilot/role/superuser`
    Superuser,
    /// `spiffe://<td>/spike/pilot/role/recover`
    Recover,
    /// `spiffe://<td>/spike/pilot/role/restore`
    Restore,
    /// `spiffe://<td>/spike/bootstrap`
    Bootstrap,
    /// `spiffe://<td>/spike/workload/role/lite`: may use the cipher routes, nothing else.
    Lite,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 7] = [
        Role::Nexus,
        Role::Keeper,
        Role::Superuser,
        Role::Recover,
        Role::Restore,
        Role::Bootstrap,
        Role::Lite,
    ];

    /// The role's SPIFFE ID path (starting with `/`).
    pub fn path(self) -> &'static str {
        match self {
            Role::Nexus => "/spike/nexus",
            Role::Keeper => "/spike/keeper",
            Role::Superuser => "/spike/pilot/role/superuser",
            Role::Recover => "/spike/pilot/role/recover",
            Role::Restore => "/spike/pilot/role/restore",
            Role::Bootstrap => "/spike/bootstrap",
            Role::Lite => "/spike/workload/role/lite",
        }
    }

    /// The role's SPIFFE ID in `trust_domain`.
    pub fn spiffe_id(self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}{}", self.path())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Nexus => "nexus",
            Role::Keeper => "keeper",
            Role::Superuser => "superuser",
            Role::Recover => "recover",
            Role::Restore => "restore",
            Role::Bootstrap => "bootstrap",
            Role::Lite => "lite workload",
        })
    }
}

/// The role `id` holds in `trust_domain`, if any.
///
/// The scheme and trust domain are compared ASCII case-insensitively (so an
/// oddly cased ID can never slip past as a non-role); the path is exact.
pub fn role_of(trust_domain: &str, id: &str) -> Option<Role> {
    let scheme = id.get(..9)?;
    if !scheme.eq_ignore_ascii_case("spiffe://") {
        return None;
    }
    let rest = &id[9..];
    let td = rest.get(..trust_domain.len())?;
    if !td.eq_ignore_ascii_case(trust_domain) {
        return None;
    }
    let path = &rest[trust_domain.len()..];
    Role::ALL.into_iter().find(|role| {
        path.strip_prefix(role.path())
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ids_recognised() {
        for role in Role::ALL {
            let id = role.spiffe_id("td");
            assert_eq!(role_of("td", &id), Some(role));
            assert_eq!(role_of("td", &format!("{id}/instance-1")), Some(role));
            assert_eq!(role_of("td", &format!("{id}/")), Some(role));
        }
        assert_eq!(role_of("td", "SPIFFE://TD/spike/nexus"), Some(Role::Nexus));
    }

    #[test]
    fn look_alikes_are_not_roles() {
        for id in [
            "spiffe://td/spike/nexus-fake",
            "spiffe://td/spike/nexusx/a",
            "spiffe://td/spike/pilot/role/superuser2",
            "spiffe://td/spike/pilot",
            "spiffe://td/spike",
            "spiffe://td/app/spike/nexus",
            "spiffe://td.evil/spike/nexus",
            "spiffe://other/spike/nexus",
            "spiffe://td",
            "spiffe:/",
            "",
            "spiffe://tdspike/nexus",
        ] {
            assert_eq!(role_of("td", id), None, "{id}");
        }
    }
}
