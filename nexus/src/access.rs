//! Who may do what: the policy set compiled once and swapped whole on every change, so an
//! access check is regex matching in memory, with no database read and no decryption.
//!
//! The Pilot superuser role may manage everything; other role IDs (Nexus, keepers,
//! recover/restore, bootstrap) are authorised by route and never through policies; every
//! other caller gets exactly what policies grant.

use arc_swap::ArcSwap;
use policies::{Permission, Policy, PolicyError, PolicySet, Role, role_of};

/// The compiled policies of one trust domain.
#[derive(Debug)]
pub struct Access {
    trust_domain: String,
    set: ArcSwap<PolicySet>,
}

impl Access {
    /// No policies: everyone but the superuser is denied.
    pub fn new(trust_domain: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::new(trust_domain, Vec::new())?;
        Ok(Access {
            trust_domain: trust_domain.to_owned(),
            set: ArcSwap::from_pointee(set),
        })
    }

    /// Replaces every policy at once.
    pub fn replace(&self, policies: Vec<Policy>) -> Result<(), PolicyError> {
        let set = PolicySet::new(self.trust_domain.clone(), policies)?;
        self.set.store(std::sync::Arc::new(set));
        Ok(())
    }

    /// The trust domain whose role IDs these are.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The role `caller` holds, if any.
    pub fn role(&self, caller: &str) -> Option<Role> {
        role_of(&self.trust_domain, caller)
    }

    /// Whether `caller` is the Pilot superuser.
    pub fn is_superuser(&self, caller: &str) -> bool {
        self.role(caller) == Some(Role::Superuser)
    }

    /// Whether `caller` may do `wanted` on `path`.
    pub fn allows(&self, caller: &str, path: &str, wanted: Permission) -> bool {
        self.is_superuser(caller) || self.set.load().check(caller, path, wanted)
    }

    /// The paths among `paths` that `caller` may read.
    pub fn readable(&self, caller: &str, paths: Vec<String>) -> Vec<String> {
        if self.is_superuser(caller) {
            return paths;
        }
        let set = self.set.load();
        let readable: std::collections::HashSet<&str> = set
            .readable_paths(caller, paths.iter().map(String::as_str))
            .into_iter()
            .collect();
        let keep: Vec<bool> = paths
            .iter()
            .map(|p| readable.contains(p.as_str()))
            .collect();
        paths
            .into_iter()
            .zip(keep)
            .filter_map(|(path, keep)| keep.then_some(path))
            .collect()
    }

    /// Number of policies in force.
    pub fn len(&self) -> usize {
        self.set.load().len()
    }

    /// Whether no policy is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superuser_bypasses_policies_and_others_get_what_is_granted() {
        let access = Access::new("td").expect("access");
        let admin = "spiffe://td/spike/pilot/role/superuser";
        let app = "spiffe://td/app/billing";
        assert!(access.allows(admin, "db/x", Permission::Write));
        assert!(!access.allows(app, "db/x", Permission::Read));
        access
            .replace(vec![Policy::new(
                "billing",
                "spiffe://td/app/billing",
                "db/.*",
                [Permission::Read],
            )])
            .expect("replace");
        assert!(access.allows(app, "db/x", Permission::Read));
        assert!(!access.allows(app, "db/x", Permission::Write));
        assert!(!access.allows(app, "other/db/x", Permission::Read));
        assert_eq!(
            access.readable(app, vec!["a".into(), "db/1".into(), "db/2".into()]),
            vec!["db/1".to_owned(), "db/2".to_owned()]
        );
        assert!(!access.allows("spiffe://td/spike/nexus", "db/x", Permission::Read));
    }
}
