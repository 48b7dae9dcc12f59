//! Who may do what: the policy set compiled once and swapped whole on every change, so an
//! access check is regex matching in memory, with no database read and no decryption.
//!
//! The Pilot superuser role may manage everything; other role IDs (Nexus, keepers,
//! recover/restore, bootstrap) are authorised by route and never through policies; every
//! other caller gets exactly what policies grant. Which IDs hold a role is [`RoleDomains`]'s
//! answer: the local trust domain's role IDs, and a federated trust domain's only for the
//! roles it is listed for; its other IDs, role-shaped or not, are ordinary callers.
//!
//! # Knowing the cache is current
//!
//! The compiled set carries the policy generation it was loaded at (the datastore counts
//! policy changes). The cache also remembers the highest generation it has been told
//! exists ([`Access::announce`]: by this process's own writes, by change notifications
//! from other replicas, by reading the datastore). While the loaded generation is below
//! the announced one, the cache is stale and must be reloaded before it judges anyone
//! ([`Access::is_current`]); [`crate::policy::sync`] does that.
//!
//! Whether announcements can be relied on is [`Access::changes_pushed`]: true while every
//! change is sure to be announced (the PostgreSQL listener is connected, or the datastore is
//! SQLite, written by this process only). When false, each check first reads the stored
//! generation.
//!
//! # One change without a reload
//!
//! A change this process committed is applied to the installed set in place
//! ([`Access::apply`]: one policy compiled, the others shared) when the installed set holds
//! exactly the generation before it: each change increments the generation by one in its
//! own transaction, so that change is then the only difference. This process commits and
//! applies its changes one at a time ([`Access::write_lock`]) and loads a set together with
//! its generation from one snapshot, so that is the usual case. Otherwise (another
//! replica's change came first) the cache is reloaded whole.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use policies::{CompiledPolicy, Permission, Policy, PolicyError, PolicySet, Role, RoleDomains};
use spiffe::SpiffeId;

/// A compiled policy set and the generation it was loaded at.
#[derive(Debug)]
struct Compiled {
    generation: u64,
    set: PolicySet,
    /// Whether `set` holds exactly the changes up to `generation`, none later (see the
    /// module docs); only then can the next change be applied in place.
    exact: bool,
}

/// One policy change, as this process committed it.
#[derive(Debug)]
pub enum Change {
    /// The policy was created or replaced.
    Put(CompiledPolicy),
    /// The policy of this name was deleted.
    Delete(String),
}

/// The compiled policies of one trust domain.
#[derive(Debug)]
pub struct Access {
    roles: RoleDomains,
    compiled: ArcSwap<Compiled>,
    /// Highest policy generation known to exist.
    announced: AtomicU64,
    /// Whether every policy change is sure to be announced (see the module docs).
    pushed: AtomicBool,
    /// Serialises [`Access::install`]'s compare-and-swap.
    installing: Mutex<()>,
    /// One reload from the datastore at a time ([`super::sync`]); callers that waited find
    /// the cache current and skip theirs.
    reload: tokio::sync::Mutex<()>,
    /// One policy change of this process at a time, from its commit until it is applied
    /// ([`Access::write_lock`]).
    writes: tokio::sync::Mutex<()>,
}

impl Access {
    /// No policies (generation 0, as in a new datastore): everyone but the superuser is
    /// denied. Changes are not known to be pushed until [`Access::set_changes_pushed`].
    pub fn new(trust_domain: &str) -> Result<Self, PolicyError> {
        Self::for_roles(RoleDomains::local(trust_domain))
    }

    /// [`Access::new`] with role IDs recognised where `roles` says (federated trust domains).
    pub fn for_roles(roles: RoleDomains) -> Result<Self, PolicyError> {
        let set = PolicySet::for_roles(roles.clone(), Vec::new())?;
        Ok(Access {
            roles,
            // Not loaded from the datastore: nothing may be applied to it.
            compiled: ArcSwap::from_pointee(Compiled {
                generation: 0,
                set,
                exact: false,
            }),
            announced: AtomicU64::new(0),
            pushed: AtomicBool::new(false),
            installing: Mutex::new(()),
            reload: tokio::sync::Mutex::new(()),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Replaces every policy at once with `policies`, loaded at `generation`, unless a set
    /// of a later generation is installed already (concurrent reloads may finish out of
    /// order; the older one must not win). `exact`: no change after `generation` can be
    /// among `policies` (the generation did not move while they were read). Returns whether
    /// it was installed.
    pub fn install(
        &self,
        generation: u64,
        policies: Vec<Policy>,
        exact: bool,
    ) -> Result<bool, PolicyError> {
        let set = PolicySet::for_roles(self.roles.clone(), policies)?;
        let _one = self
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if generation < self.generation() {
            return Ok(false);
        }
        self.compiled.store(Arc::new(Compiled {
            generation,
            set,
            exact,
        }));
        Ok(true)
    }

    /// Applies `change`, which this process committed as policy generation `generation`,
    /// to the installed set, if that set holds exactly generation `generation - 1` (see the
    /// module docs). Returns whether it did; if not, nothing changed and the caller reloads.
    pub fn apply(&self, generation: u64, change: Change) -> bool {
        let _one = self
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let installed = self.compiled.load();
        if !installed.exact || installed.generation.checked_add(1) != Some(generation) {
            return false;
        }
        let set = match change {
            Change::Put(policy) => installed.set.with(policy),
            Change::Delete(name) => installed.set.without(&name),
        };
        self.compiled.store(Arc::new(Compiled {
            generation,
            set,
            exact: true,
        }));
        true
    }

    /// Waits for this process's other policy changes to be applied; commit and apply a
    /// change while holding the guard. Each change is then applied onto the generation
    /// just before it, in place: committed concurrently, changes reached [`Access::apply`]
    /// in any order, and each one out of order reloaded and recompiled the whole set (16
    /// writers filling 1,000 policies took minutes). Policy changes are administrative and
    /// about a millisecond each; other replicas' changes still arrive by reloads.
    pub(crate) async fn write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Waits for any other reload to finish; reload while holding the guard.
    pub(crate) async fn reload_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reload.lock().await
    }

    /// The generation of the installed set.
    pub fn generation(&self) -> u64 {
        self.compiled.load().generation
    }

    /// Records that policy generation `generation` exists.
    pub fn announce(&self, generation: u64) {
        self.announced.fetch_max(generation, Ordering::SeqCst);
    }

    /// The highest generation known to exist.
    pub fn announced(&self) -> u64 {
        self.announced.load(Ordering::SeqCst)
    }

    /// Whether the installed set is at least as new as every announced generation.
    pub fn is_current(&self) -> bool {
        self.generation() >= self.announced()
    }

    /// Declares whether every policy change will be announced from now on.
    pub fn set_changes_pushed(&self, pushed: bool) {
        self.pushed.store(pushed, Ordering::SeqCst);
    }

    /// Whether every policy change is sure to be announced.
    pub fn changes_pushed(&self) -> bool {
        self.pushed.load(Ordering::SeqCst)
    }

    /// The local trust domain, whose role IDs every role holds.
    pub fn trust_domain(&self) -> &str {
        self.roles.local_trust_domain()
    }

    /// The role `caller` holds, if any.
    pub fn role(&self, caller: &SpiffeId) -> Option<Role> {
        self.roles.role_of(&caller.to_string())
    }

    /// Whether `caller` is the Pilot superuser.
    pub fn is_superuser(&self, caller: &SpiffeId) -> bool {
        self.role(caller) == Some(Role::Superuser)
    }

    /// Whether `caller` may do `wanted` on `path`.
    pub fn allows(&self, caller: &SpiffeId, path: &str, wanted: Permission) -> bool {
        self.is_superuser(caller)
            || self
                .compiled
                .load()
                .set
                .check(&caller.to_string(), path, wanted)
    }

    /// The paths among `paths` that `caller` may read.
    pub fn readable(&self, caller: &SpiffeId, mut paths: Vec<String>) -> Vec<String> {
        if self.is_superuser(caller) {
            return paths;
        }
        let compiled = self.compiled.load();
        let filter = compiled.set.read_filter(&caller.to_string());
        paths.retain(|path| filter.allows(path));
        paths
    }

    /// Gives `emit` each of `paths` that `caller` may read, in order: what
    /// [`readable`](Self::readable) keeps, without owning the paths or collecting them.
    pub fn each_readable<'p>(
        &self,
        caller: &SpiffeId,
        paths: impl IntoIterator<Item = &'p str>,
        mut emit: impl FnMut(&'p str),
    ) {
        if self.is_superuser(caller) {
            paths.into_iter().for_each(emit);
            return;
        }
        let compiled = self.compiled.load();
        let filter = compiled.set.read_filter(&caller.to_string());
        if filter.is_empty() {
            return;
        }
        for path in paths {
            if filter.allows(path) {
                emit(path);
            }
        }
    }

    /// Number of policies in force.
    pub fn len(&self) -> usize {
        self.compiled.load().set.len()
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
        let id = |id: &str| SpiffeId::new(id).expect("SPIFFE ID");
        let admin = &id("spiffe://td/spike/pilot/role/superuser");
        let app = &id("spiffe://td/app/billing");
        assert!(access.allows(admin, "db/x", Permission::Write));
        assert!(!access.allows(app, "db/x", Permission::Read));
        let billing = || {
            vec![Policy::new(
                "billing",
                "spiffe://td/app/billing",
                "db/.*",
                [Permission::Read],
            )]
        };
        assert!(access.install(1, billing(), true).expect("install"));
        assert!(access.allows(app, "db/x", Permission::Read));
        assert!(!access.allows(app, "db/x", Permission::Write));
        assert!(!access.allows(app, "other/db/x", Permission::Read));
        assert_eq!(
            access.readable(app, vec!["a".into(), "db/1".into(), "db/2".into()]),
            vec!["db/1".to_owned(), "db/2".to_owned()]
        );
        assert!(!access.allows(&id("spiffe://td/spike/nexus"), "db/x", Permission::Read));

        // A reload that read an older generation, finishing late, does not win.
        assert!(!access.install(0, Vec::new(), true).expect("install"));
        assert!(access.allows(app, "db/x", Permission::Read));
        assert!(
            access
                .install(1, billing(), true)
                .expect("same generation again")
        );
    }

    #[test]
    fn a_foreign_superuser_counts_only_where_its_trust_domain_is_listed() {
        let id = |id: &str| SpiffeId::new(id).expect("SPIFFE ID");
        let listed = &id("spiffe://other.org/spike/pilot/role/superuser");
        let unlisted = &id("spiffe://third.org/spike/pilot/role/superuser");
        let access = Access::for_roles(
            RoleDomains::local("td").with_foreign(Role::Superuser, ["other.org"]),
        )
        .expect("access");
        assert_eq!(access.role(listed), Some(Role::Superuser));
        assert!(access.allows(listed, "db/x", Permission::Write));
        assert_eq!(access.readable(listed, vec!["db/x".into()]), ["db/x"]);
        // Unlisted, the same path is an ordinary caller's: nothing without a policy, what a
        // policy grants with one, never more.
        assert_eq!(access.role(unlisted), None);
        assert!(!access.is_superuser(unlisted));
        assert!(!access.allows(unlisted, "db/x", Permission::Read));
        let policy = Policy::new(
            "third",
            "spiffe://third\\.org/.*",
            "db/.*",
            [Permission::Read],
        );
        access.install(1, vec![policy], true).expect("install");
        assert!(access.allows(unlisted, "db/x", Permission::Read));
        assert!(!access.allows(unlisted, "db/x", Permission::Write));
        assert!(!access.allows(unlisted, "other/x", Permission::Read));
        assert_eq!(access.trust_domain(), "td");
    }

    #[test]
    fn announced_generation_marks_the_cache_stale_until_installed() {
        let access = Access::new("td").expect("access");
        assert!(access.is_current());
        access.announce(3);
        access.announce(2);
        assert_eq!(access.announced(), 3);
        assert!(!access.is_current());
        access.install(3, Vec::new(), true).expect("install");
        assert!(access.is_current());
        assert!(!access.changes_pushed(), "not trusted until declared");
    }

    #[test]
    fn a_change_is_applied_only_onto_the_generation_just_before_it() {
        let access = Access::new("td").expect("access");
        let app = SpiffeId::new("spiffe://td/app").expect("SPIFFE ID");
        let put = || {
            let policy = Policy::new("p", "spiffe://td/app", "db/.*", [Permission::Read]);
            Change::Put(policy.compile().expect("valid policy"))
        };
        // The initial set was never loaded: a reload must come first.
        assert!(!access.apply(1, put()));
        access.install(4, Vec::new(), true).expect("install");
        // A gap (generation 5 committed elsewhere) or a generation already held: reload.
        assert!(!access.apply(6, put()));
        assert!(!access.apply(4, put()));
        assert!(!access.allows(&app, "db/x", Permission::Read));
        assert!(access.apply(5, put()));
        assert_eq!(access.generation(), 5);
        assert!(access.allows(&app, "db/x", Permission::Read));
        assert!(access.apply(6, Change::Delete("p".into())));
        assert!(!access.allows(&app, "db/x", Permission::Read));
        // A set that may hold later changes than its generation takes no change in place.
        access.install(7, Vec::new(), false).expect("install");
        assert!(!access.apply(8, put()));
        assert_eq!(access.generation(), 7);
    }
}
