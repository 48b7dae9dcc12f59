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
//!
//! With federation, [`RoleDomains`] says in which trust domains each role is
//! recognised: the local one always, a foreign one only where it is listed for
//! that role. A foreign ID shaped like a role in a trust domain not listed for
//! it (`spiffe://other.org/spike/pilot/role/superuser`) holds no role: it is an
//! ordinary caller, judged by policies like any workload. Otherwise federating
//! with a trust domain would hand its operators every role of ours.

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

/// The trust domains each role is recognised in: the local one for every role, and foreign
/// ones listed for a role (Nexus's `--superuser-trust-domains`, a keeper's
/// `--nexus-trust-domains`...) for that role alone.
///
/// Trust domains are compared as [`role_of`] compares them; give them in canonical
/// (lowercase) form, as the configuration parsers check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDomains {
    local: String,
    /// `(role, foreign trust domain)` pairs, without duplicates; a handful at most, so a
    /// list scanned in order is as fast as any map.
    foreign: Vec<(Role, String)>,
}

impl RoleDomains {
    /// Every role recognised in `trust_domain` alone.
    pub fn local(trust_domain: impl Into<String>) -> Self {
        RoleDomains {
            local: trust_domain.into(),
            foreign: Vec::new(),
        }
    }

    /// These roles, with `role` recognised in `trust_domains` too. The local trust domain
    /// and pairs already listed are skipped.
    pub fn with_foreign<S: Into<String>>(
        mut self,
        role: Role,
        trust_domains: impl IntoIterator<Item = S>,
    ) -> Self {
        for td in trust_domains {
            let td = td.into();
            if td != self.local && !self.foreign.iter().any(|(r, t)| *r == role && *t == td) {
                self.foreign.push((role, td));
            }
        }
        self
    }

    /// The local trust domain.
    pub fn local_trust_domain(&self) -> &str {
        &self.local
    }

    /// The trust domains `role` is recognised in: the local one first, then the foreign
    /// ones listed for it, in the order given.
    pub fn trust_domains(&self, role: Role) -> impl Iterator<Item = &str> {
        std::iter::once(self.local.as_str()).chain(
            self.foreign
                .iter()
                .filter(move |(r, _)| *r == role)
                .map(|(_, td)| td.as_str()),
        )
    }

    /// Every trust domain named here (local first), each once.
    pub fn all_trust_domains(&self) -> Vec<&str> {
        let mut all = vec![self.local.as_str()];
        for (_, td) in &self.foreign {
            if !all.contains(&td.as_str()) {
                all.push(td);
            }
        }
        all
    }

    /// The role `id` holds: any role in the local trust domain, or a role listed for the
    /// foreign trust domain it is in; `None` for every other ID, role-shaped or not.
    pub fn role_of(&self, id: &str) -> Option<Role> {
        role_of(&self.local, id).or_else(|| {
            self.foreign
                .iter()
                .find(|(role, td)| role_of(td, id) == Some(*role))
                .map(|(role, _)| *role)
        })
    }
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

    #[test]
    fn foreign_role_ids_count_only_where_listed_for_that_role() {
        let roles = RoleDomains::local("a.org")
            .with_foreign(Role::Superuser, ["b.org"])
            .with_foreign(Role::Recover, ["b.org", "c.org", "a.org", "b.org"]);
        // The local trust domain holds every role, as before.
        for role in Role::ALL {
            assert_eq!(roles.role_of(&role.spiffe_id("a.org")), Some(role));
        }
        // b.org holds exactly the roles listed for it.
        for role in Role::ALL {
            let id = role.spiffe_id("b.org");
            let expected = matches!(role, Role::Superuser | Role::Recover).then_some(role);
            assert_eq!(roles.role_of(&id), expected, "{id}");
            assert_eq!(roles.role_of(&format!("{id}/x")), expected, "{id}/x");
        }
        assert_eq!(
            roles.role_of("spiffe://c.org/spike/pilot/role/recover"),
            Some(Role::Recover)
        );
        // Anything else in a foreign trust domain is an ordinary caller, role-shaped or not.
        for id in [
            "spiffe://c.org/spike/pilot/role/superuser",
            "spiffe://d.org/spike/pilot/role/superuser",
            "spiffe://b.org/spike/nexus",
            "spiffe://b.org/spike/pilot/role/superuser2",
            "spiffe://b.org.evil/spike/pilot/role/superuser",
            "spiffe://evil.b.org/spike/pilot/role/superuser",
            "spiffe://b.org/app/spike/pilot/role/superuser",
        ] {
            assert_eq!(roles.role_of(id), None, "{id}");
        }
        // The local trust domain and repeats were not listed again.
        assert_eq!(
            roles.trust_domains(Role::Recover).collect::<Vec<_>>(),
            ["a.org", "b.org", "c.org"]
        );
        assert_eq!(
            roles.trust_domains(Role::Nexus).collect::<Vec<_>>(),
            ["a.org"]
        );
        assert_eq!(roles.all_trust_domains(), ["a.org", "b.org", "c.org"]);
        assert_eq!(roles.local_trust_domain(), "a.org");
        // Without foreign lists, exactly `role_of` in the local trust domain.
        let local = RoleDomains::local("a.org");
        for id in ["spiffe://a.org/spike/nexus", "spiffe://b.org/spike/nexus"] {
            assert_eq!(local.role_of(id), role_of("a.org", id));
        }
    }
}
