//! A compiled set of policies and the access decision.
//!
//! [`PolicySet`] is built once (compiling and validating every policy) and
//! then answers [`PolicySet::check`] with nothing but regex matching: no I/O,
//! no per-check allocation. Decisions are default-deny, and role identities
//! (see [`roles`](crate::roles)) are always denied here because they are
//! authorised by route, not by policy. Which IDs are roles is [`RoleDomains`]'s
//! answer: with federation, a foreign trust domain's role-shaped ID is a role
//! (and so denied here) only where that trust domain is listed for the role.
//!
//! One change makes a new set with [`PolicySet::with`] or
//! [`PolicySet::without`], which share every other compiled policy with the
//! old set: a change costs one compilation, not one per policy.
//!
//! A check does not try every policy: the policies whose caller pattern matches
//! a caller are found once per caller and set (see the `applicable` module),
//! so a check costs a map look-up plus the path patterns of those policies,
//! whatever the number of policies.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::applicable::{ApplicableCache, Indices};
use crate::permission::Permission;
use crate::policy::{CompiledPolicy, Policy, PolicyError};
use crate::roles::RoleDomains;

/// Compiled policies for one trust domain (and the foreign ones it federates with).
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Whose IDs are roles, never granted anything here; shared by derived sets.
    roles: Arc<RoleDomains>,
    /// Shared between the sets one change derives from each other.
    policies: Vec<Arc<CompiledPolicy>>,
    /// Which of `policies` apply to each caller seen so far.
    applicable: ApplicableCache,
}

impl PolicySet {
    /// Validates and compiles `policies` for `trust_domain`. Names must be unique.
    pub fn new(
        trust_domain: impl Into<String>,
        policies: Vec<Policy>,
    ) -> Result<Self, PolicyError> {
        Self::for_roles(RoleDomains::local(trust_domain), policies)
    }

    /// Validates and compiles `policies`; the IDs `roles` recognises are denied. Names must
    /// be unique.
    pub fn for_roles(roles: RoleDomains, policies: Vec<Policy>) -> Result<Self, PolicyError> {
        let compiled = policies
            .iter()
            .map(Policy::compile)
            .collect::<Result<Vec<_>, _>>()?;
        Self::compiled_for_roles(roles, compiled)
    }

    /// Builds a set from already compiled policies. Names must be unique.
    pub fn from_compiled(
        trust_domain: impl Into<String>,
        policies: Vec<CompiledPolicy>,
    ) -> Result<Self, PolicyError> {
        Self::compiled_for_roles(RoleDomains::local(trust_domain), policies)
    }

    /// [`PolicySet::from_compiled`] with the roles of [`PolicySet::for_roles`].
    pub fn compiled_for_roles(
        roles: RoleDomains,
        policies: Vec<CompiledPolicy>,
    ) -> Result<Self, PolicyError> {
        for td in roles.all_trust_domains() {
            let valid_td = !td.is_empty()
                && td
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !valid_td {
                return Err(PolicyError::InvalidTrustDomain(td.to_owned()));
            }
        }
        let mut names = BTreeSet::new();
        for p in &policies {
            if !names.insert(p.name()) {
                return Err(PolicyError::DuplicateName(p.name().to_owned()));
            }
        }
        Ok(PolicySet {
            roles: Arc::new(roles),
            policies: policies.into_iter().map(Arc::new).collect(),
            applicable: ApplicableCache::default(),
        })
    }

    /// This set with `policy` added, or replacing the policy of the same name
    /// in its place. A new name goes before the first policy whose name sorts
    /// after it, so a set kept in name order (as loaded) stays in name order.
    pub fn with(&self, policy: CompiledPolicy) -> PolicySet {
        let mut policies = self.policies.clone();
        let name = policy.name();
        match policies.iter().position(|p| p.name() >= name) {
            Some(i) if policies[i].name() == name => policies[i] = Arc::new(policy),
            Some(i) => policies.insert(i, Arc::new(policy)),
            None => policies.push(Arc::new(policy)),
        }
        PolicySet {
            roles: self.roles.clone(),
            policies,
            applicable: ApplicableCache::default(),
        }
    }

    /// This set without the policy named `name` (the same set if it has none).
    pub fn without(&self, name: &str) -> PolicySet {
        PolicySet {
            roles: self.roles.clone(),
            policies: self
                .policies
                .iter()
                .filter(|p| p.name() != name)
                .cloned()
                .collect(),
            applicable: ApplicableCache::default(),
        }
    }

    /// The local trust domain, whose role IDs are never granted.
    pub fn trust_domain(&self) -> &str {
        self.roles.local_trust_domain()
    }

    /// Whose IDs are roles (never granted anything here).
    pub fn roles(&self) -> &RoleDomains {
        &self.roles
    }

    /// The compiled policies, in the order given.
    pub fn policies(&self) -> impl ExactSizeIterator<Item = &CompiledPolicy> {
        self.policies.iter().map(|p| &**p)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set has no policies (and so denies everything).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether `caller` may perform `wanted` on `path`.
    ///
    /// True only if the caller is not a role and some policy fully matches
    /// both the caller and the path and grants `wanted` or `super`.
    pub fn check(&self, caller: &str, path: &str, wanted: Permission) -> bool {
        if self.is_role(caller) {
            return false;
        }
        self.applicable(caller).iter().any(|&i| {
            let p = &self.policies[i];
            p.grants(wanted) && p.matches_path(path)
        })
    }

    /// The subset of `paths` that `caller` may `read`, in input order.
    pub fn readable_paths<'a>(
        &self,
        caller: &str,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        let filter = self.read_filter(caller);
        if filter.is_empty() {
            return Vec::new();
        }
        paths
            .into_iter()
            .filter(|path| filter.allows(path))
            .collect()
    }

    /// What `caller` may read, its policies looked up once: for a long list of paths,
    /// [`ReadFilter::allows`] answers each as [`check`](Self::check) would for
    /// [`Permission::Read`], without a look-up per path.
    pub fn read_filter(&self, caller: &str) -> ReadFilter<'_> {
        if self.is_role(caller) {
            return ReadFilter(Vec::new());
        }
        ReadFilter(
            self.applicable(caller)
                .iter()
                .map(|&i| &*self.policies[i])
                .filter(|p| p.grants(Permission::Read))
                .collect(),
        )
    }

    /// The indices of the policies whose caller pattern matches `caller`, in set order.
    fn applicable(&self, caller: &str) -> Indices {
        self.applicable.get_or_scan(caller, || {
            self.policies
                .iter()
                .enumerate()
                .filter(|(_, p)| p.matches_caller(caller))
                .map(|(i, _)| i)
                .collect()
        })
    }

    fn is_role(&self, caller: &str) -> bool {
        self.roles.role_of(caller).is_some()
    }
}

/// The policies that let one caller read: see [`PolicySet::read_filter`].
#[derive(Debug)]
pub struct ReadFilter<'a>(Vec<&'a CompiledPolicy>);

impl ReadFilter<'_> {
    /// Whether the caller may read `path`.
    pub fn allows(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.matches_path(path))
    }

    /// Whether the caller may read nothing at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{Role, role_of};
    use crate::{SYSTEM_ACL_PATH, SYSTEM_CIPHER_EXEC_PATH};

    fn set(policies: Vec<Policy>) -> PolicySet {
        match PolicySet::new("td", policies) {
            Ok(s) => s,
            Err(e) => panic!("policy set rejected: {e}"),
        }
    }

    fn billing() -> Policy {
        Policy::new(
            "billing",
            "spiffe://td/app/billing",
            "secrets/billing/.*",
            [Permission::Read],
        )
    }

    /// Billing may also write (not read) under `secrets/hr/`.
    fn hr_writer() -> Policy {
        Policy::new(
            "w",
            "spiffe://td/app/billing",
            "secrets/hr/.*",
            [Permission::Write],
        )
    }

    #[test]
    fn default_deny() {
        let s = set(vec![]);
        assert!(s.is_empty());
        assert!(!s.check("spiffe://td/app", "secrets/x", Permission::Read));
        let s = set(vec![billing()]);
        assert!(!s.check(
            "spiffe://td/app/other",
            "secrets/billing/a",
            Permission::Read
        ));
        assert!(!s.check("spiffe://td/app/billing", "secrets/hr/a", Permission::Read));
        assert!(!s.check(
            "spiffe://td/app/billing",
            "secrets/billing/a",
            Permission::Write
        ));
    }

    #[test]
    fn grants_when_both_match() {
        let s = set(vec![billing()]);
        assert!(s.check(
            "spiffe://td/app/billing",
            "secrets/billing/a",
            Permission::Read
        ));
    }

    #[test]
    fn anchoring_prefix_and_suffix_tricks_denied() {
        let s = set(vec![billing()]);
        for caller in [
            "spiffe://td/app/billing-evil",
            "spiffe://td/app/billing/evil",
            "spiffe://evil/x/spiffe://td/app/billing",
        ] {
            assert!(
                !s.check(caller, "secrets/billing/a", Permission::Read),
                "{caller}"
            );
        }
        assert!(!s.check(
            "spiffe://td/app/billing",
            "x/secrets/billing/a",
            Permission::Read
        ));
    }

    #[test]
    fn super_grants_everything() {
        let s = set(vec![Policy::new(
            "root",
            "spiffe://td/ops",
            ".*",
            [Permission::Super],
        )]);
        for p in Permission::ALL {
            assert!(s.check("spiffe://td/ops", "secrets/any", p));
            assert!(s.check("spiffe://td/ops", SYSTEM_ACL_PATH, p));
        }
    }

    #[test]
    fn roles_denied_even_with_catch_all() {
        let s = set(vec![Policy::new("all", ".*", ".*", [Permission::Super])]);
        for role in Role::ALL {
            let id = role.spiffe_id("td");
            for p in Permission::ALL {
                assert!(!s.check(&id, "secrets/a", p), "{id}");
                assert!(
                    !s.check(&format!("{id}/x"), SYSTEM_CIPHER_EXEC_PATH, p),
                    "{id}"
                );
            }
            assert!(s.readable_paths(&id, ["secrets/a"]).is_empty());
        }
        // Look-alikes are ordinary workloads, governed by policy.
        assert!(s.check(
            "spiffe://td/spike/nexus-fake",
            "secrets/a",
            Permission::Read
        ));
        assert!(s.check("spiffe://other/spike/nexus", "secrets/a", Permission::Read));
    }

    #[test]
    fn foreign_role_ids_are_denied_only_where_listed_and_otherwise_ordinary() {
        let roles = RoleDomains::local("td").with_foreign(Role::Superuser, ["other"]);
        let all = Policy::new("all", ".*", ".*", [Permission::Super]);
        let s = PolicySet::for_roles(roles.clone(), vec![all]).expect("valid");
        // other's superuser is a role: never granted through policies.
        let foreign_superuser = "spiffe://other/spike/pilot/role/superuser";
        assert!(!s.check(foreign_superuser, "secrets/a", Permission::Read));
        assert!(
            s.readable_paths(foreign_superuser, ["secrets/a"])
                .is_empty()
        );
        // Its other role-shaped IDs, and a third trust domain's, are ordinary callers.
        for caller in [
            "spiffe://other/spike/nexus",
            "spiffe://third/spike/pilot/role/superuser",
        ] {
            assert!(s.check(caller, "secrets/a", Permission::Read), "{caller}");
        }
        // Derived sets keep the roles.
        let s = s.without("all").with(compiled("any", ".*"));
        assert!(!s.check(foreign_superuser, "secrets/x", Permission::Read));
        assert!(s.check("spiffe://other/app", "secrets/x", Permission::Read));
        assert_eq!(s.roles(), &roles);
        // A malformed foreign trust domain is refused like a local one.
        let bad = RoleDomains::local("td").with_foreign(Role::Superuser, ["Other"]);
        assert_eq!(
            PolicySet::for_roles(bad, vec![]).err(),
            Some(PolicyError::InvalidTrustDomain("Other".into()))
        );
    }

    #[test]
    fn readable_paths_filters() {
        let s = set(vec![billing(), hr_writer()]);
        let paths = [
            "secrets/billing/a",
            "secrets/hr/b",
            "secrets/billing/c",
            "secrets/billingx",
        ];
        assert_eq!(
            s.readable_paths("spiffe://td/app/billing", paths),
            vec!["secrets/billing/a", "secrets/billing/c"]
        );
        assert!(s.readable_paths("spiffe://td/app/other", paths).is_empty());
        let owned: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            s.readable_paths("spiffe://td/app/billing", owned.iter().map(String::as_str))
                .len(),
            2
        );
    }

    #[test]
    fn a_read_filter_decides_every_path_as_a_read_check() {
        let s = set(vec![
            billing(),
            hr_writer(),
            Policy::new(
                "s",
                "spiffe://td/app/ops",
                "secrets/.*",
                [Permission::Super],
            ),
        ]);
        let paths = [
            "secrets/billing/a",
            "secrets/hr/b",
            "secrets/billingx",
            "other",
        ];
        let pilot = Role::Superuser.spiffe_id("td");
        let callers = [
            "spiffe://td/app/billing",
            "spiffe://td/app/ops",
            "spiffe://td/app/other",
            pilot.as_str(),
        ];
        let mut allowed = 0;
        for caller in callers {
            let filter = s.read_filter(caller);
            for path in paths {
                let read = s.check(caller, path, Permission::Read);
                assert_eq!(filter.allows(path), read, "{caller} reading {path}");
                allowed += usize::from(read);
            }
        }
        assert_eq!(allowed, 1 + 3, "billing reads one path, ops (super) three");
        assert!(
            s.read_filter(&pilot).is_empty(),
            "a role reads nothing by policy"
        );
    }

    fn names(s: &PolicySet) -> Vec<&str> {
        s.policies().map(CompiledPolicy::name).collect()
    }

    fn compiled(name: &str, caller: &str) -> CompiledPolicy {
        match Policy::new(name, caller, "secrets/.*", [Permission::Read]).compile() {
            Ok(p) => p,
            Err(e) => panic!("policy rejected: {e}"),
        }
    }

    #[test]
    fn one_change_at_a_time_keeps_name_order_and_decides_as_a_rebuild() {
        let s = set(vec![billing()]);
        let s = s.with(compiled("audit", "spiffe://td/app/audit"));
        let s = s.with(compiled("zeta", "spiffe://td/app/zeta"));
        let s = s.with(compiled("c", "spiffe://td/app/c"));
        assert_eq!(names(&s), ["audit", "billing", "c", "zeta"]);
        assert!(s.check("spiffe://td/app/c", "secrets/x", Permission::Read));

        // Replacing keeps the place and drops the old grant.
        let s = s.with(compiled("c", "spiffe://td/app/c2"));
        assert_eq!(names(&s), ["audit", "billing", "c", "zeta"]);
        assert!(!s.check("spiffe://td/app/c", "secrets/x", Permission::Read));
        assert!(s.check("spiffe://td/app/c2", "secrets/x", Permission::Read));

        let s = s.without("billing").without("no-such-policy");
        assert_eq!(names(&s), ["audit", "c", "zeta"]);
        assert!(!s.check(
            "spiffe://td/app/billing",
            "secrets/billing/a",
            Permission::Read
        ));
        // Roles stay denied in derived sets.
        let s = s.with(compiled("all", ".*"));
        assert!(!s.check("spiffe://td/spike/nexus", "secrets/x", Permission::Read));
        assert_eq!(s.trust_domain(), "td");
    }

    #[test]
    fn invalid_policy_rejects_set() {
        let bad = Policy::new("bad", "(", "x", [Permission::Read]);
        assert!(matches!(
            PolicySet::new("td", vec![billing(), bad]),
            Err(PolicyError::InvalidPattern {
                field: "spiffeidPattern",
                ..
            })
        ));
    }

    #[test]
    fn duplicate_names_and_bad_trust_domain_rejected() {
        assert_eq!(
            PolicySet::new("td", vec![billing(), billing()]).err(),
            Some(PolicyError::DuplicateName("billing".into()))
        );
        for td in ["", "td/x", "TD", "spiffe://td"] {
            assert!(
                matches!(
                    PolicySet::new(td, vec![]),
                    Err(PolicyError::InvalidTrustDomain(_))
                ),
                "{td}"
            );
        }
    }

    /// The decision as it was before callers' applicable policies were remembered: every
    /// policy tried in turn.
    fn scan(s: &PolicySet, caller: &str, path: &str, wanted: Permission) -> bool {
        role_of(s.trust_domain(), caller).is_none()
            && s.policies()
                .any(|p| p.grants(wanted) && p.matches_caller(caller) && p.matches_path(path))
    }

    fn pick<'a, R: rand::Rng>(rng: &mut R, from: &[&'a str]) -> &'a str {
        from[rng.random_range(0..from.len())]
    }

    #[test]
    fn remembered_decisions_equal_a_scan_of_every_policy() {
        use rand::{Rng, SeedableRng};
        let callers = [
            "spiffe://td/app/a",
            "spiffe://td/app/b",
            "spiffe://td/app/a/x",
            "spiffe://td/web",
            "spiffe://other/app/a",
            "spiffe://td/spike/nexus",
            "spiffe://td/spike/pilot/role/superuser",
        ];
        let caller_patterns = [
            "spiffe://td/app/a",
            "spiffe://td/app/[ab]",
            "spiffe://td/app/.*",
            "spiffe://td/.*",
            ".*",
            "spiffe://(td|other)/app/a",
            "spiffe://td/web|spiffe://td/app/b",
            "spiffe://nobody",
        ];
        let paths = ["db/x", "db/y/z", "web/a", "db", "spike/system/acl"];
        let path_patterns = ["db/.*", "db/x", "web/.*", ".*", "db/[xy].*", "nothing"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for round in 0..100 {
            let policies: Vec<Policy> = (0..rng.random_range(0..40))
                .map(|i| {
                    let wanted = Permission::ALL[rng.random_range(0..Permission::ALL.len())];
                    Policy::new(
                        format!("p{i}"),
                        pick(&mut rng, &caller_patterns),
                        pick(&mut rng, &path_patterns),
                        [wanted],
                    )
                })
                .collect();
            let mut s = set(policies);
            // Changes derive new sets; each must forget what the old one remembered.
            for step in 0..4 {
                for _ in 0..50 {
                    let caller = pick(&mut rng, &callers);
                    let path = pick(&mut rng, &paths);
                    let wanted = Permission::ALL[rng.random_range(0..Permission::ALL.len())];
                    assert_eq!(
                        s.check(caller, path, wanted),
                        scan(&s, caller, path, wanted),
                        "round {round} step {step}: {caller} {path} {wanted:?}"
                    );
                    let expected: Vec<&str> = paths
                        .iter()
                        .copied()
                        .filter(|p| scan(&s, caller, p, Permission::Read))
                        .collect();
                    assert_eq!(s.readable_paths(caller, paths), expected);
                }
                let name = format!("p{}", rng.random_range(0..45));
                s = if rng.random_bool(0.5) {
                    s.without(&name)
                } else {
                    let policy = Policy::new(
                        name,
                        pick(&mut rng, &caller_patterns),
                        pick(&mut rng, &path_patterns),
                        [Permission::Read],
                    );
                    match policy.compile() {
                        Ok(p) => s.with(p),
                        Err(e) => panic!("policy rejected: {e}"),
                    }
                };
            }
        }
    }

    #[test]
    fn remembered_callers_are_bounded() {
        let s = set(vec![billing()]);
        for i in 0..crate::applicable::MAX_CALLERS + 10 {
            assert!(!s.check(&format!("spiffe://td/app/{i}"), "x", Permission::Read));
        }
        assert!(s.applicable.len() <= crate::applicable::MAX_CALLERS);
        assert!(s.check(
            "spiffe://td/app/billing",
            "secrets/billing/a",
            Permission::Read
        ));
        // A derived set starts with nothing remembered.
        assert_eq!(s.without("none").applicable.len(), 0);
    }
}
