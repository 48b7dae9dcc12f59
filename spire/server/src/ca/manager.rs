//! The key manager: the server's X.509 CA and JWT signing key, each in two slots, rotated
//! without a gap on SPIRE's schedule.
//!
//! Each kind of authority has a *current* slot, which signs, and a *next* slot. Once the
//! current authority has lived half its lifetime (but no earlier than 30 days before it
//! expires) the next one is *prepared*: generated, stored, and published in the trust bundle
//! by the caller, so that agents and workloads trust it before anything is signed with it.
//! Once five sixths of the lifetime have passed (no earlier than 7 days before expiry) the
//! next authority is *activated* and signs from then on. The old one stays in the bundle until
//! it expires, and everything it signed is capped at its expiry, so no workload ever holds an
//! SVID or token that its bundle cannot verify.
//!
//! The public halves are files in the server's data directory; the private keys are in the key
//! manager ([`super::keys`]) under the names below (the disk key manager stores key `k` as
//! `k.pem`, mode 0600, beside the public files; a PKCS#11 token labels it `<prefix>k`):
//!
//! | slot    | X.509 CA                             | JWT key                                |
//! |---------|--------------------------------------|----------------------------------------|
//! | current | key `ca-key`, `ca-cert.pem`          | key `jwt-key`, `jwt-key.json`          |
//! | next    | key `ca-next-key`, `ca-next-cert.pem` | key `jwt-next-key`, `jwt-next-key.json` |
//!
//! Preparing creates the key first, then writes the public file; activating renames the key
//! first, then the public file; every write and rename is atomic and durable. So after a crash
//! a next *key* without its public file is an interrupted preparation (discarded; prepared
//! again later), and a next *public file* without its key is an interrupted activation
//! (completed). A current authority found expired at start is replaced by the prepared one, or
//! by a new one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use spiffe::TrustDomain;

use super::keys::{KeyManager, disk::DiskKeyManager};
use super::upstream::DiskUpstream;
use super::{Ca, CaError, JwtAuthority, storage};

/// Preparation happens at most this long before the current authority expires.
const MAX_PREPARE_LEAD: i64 = 30 * 24 * 3600;
/// Activation happens at most this long before the current authority expires.
const MAX_ACTIVATE_LEAD: i64 = 7 * 24 * 3600;

/// When to prepare the successor of an authority valid from `not_before` to `not_after`.
pub fn prepare_at(not_before: i64, not_after: i64) -> i64 {
    not_after - ((not_after - not_before) / 2).min(MAX_PREPARE_LEAD)
}

/// When to activate the successor of an authority valid from `not_before` to `not_after`.
pub fn activate_at(not_before: i64, not_after: i64) -> i64 {
    not_after - ((not_after - not_before) / 6).min(MAX_ACTIVATE_LEAD)
}

/// What one rotation check did to one kind of authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Step {
    /// Nothing was due.
    #[default]
    Unchanged,
    /// A next authority was created; it must be published before it is activated.
    Prepared,
    /// The next authority became the current one.
    Activated,
}

/// What one rotation check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// The X.509 CA.
    pub x509: Step,
    /// The JWT signing key.
    pub jwt: Step,
}

impl Rotation {
    /// Whether anything changed (and so the bundle must be published again).
    pub fn changed(&self) -> bool {
        *self != Rotation::default()
    }
}

/// The server's signing authorities and their rotation.
pub struct Authorities {
    dir: PathBuf,
    trust_domain: TrustDomain,
    ttl: Duration,
    keys: Arc<dyn KeyManager>,
    upstream: Option<Arc<DiskUpstream>>,
    x509: RwLock<Slots<Ca>>,
    jwt: RwLock<Slots<JwtAuthority>>,
}

impl std::fmt::Debug for Authorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorities")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain.as_str())
            .field("keys", &self.keys.kind())
            .finish_non_exhaustive()
    }
}

impl Authorities {
    /// Loads both kinds of authority from `data_dir` (created 0700 if missing), completing or
    /// discarding an interrupted rotation step, and creates what is missing or expired. New
    /// authorities live for `ttl`.
    ///
    /// The private keys are files in `data_dir` too; [`Authorities::open`] takes another key
    /// manager.
    pub fn load_or_create(
        data_dir: &Path,
        trust_domain: &TrustDomain,
        ttl: Duration,
    ) -> Result<Authorities, CaError> {
        let keys = Arc::new(DiskKeyManager::new(data_dir));
        Authorities::open(data_dir, trust_domain, ttl, keys, None)
    }

    /// [`Authorities::load_or_create`] with the private keys in `keys`, and each new CA
    /// signed by `upstream` when there is one.
    pub fn open(
        data_dir: &Path,
        trust_domain: &TrustDomain,
        ttl: Duration,
        keys: Arc<dyn KeyManager>,
        upstream: Option<Arc<DiskUpstream>>,
    ) -> Result<Authorities, CaError> {
        storage::ensure_private_dir(data_dir)?;
        let now = super::now().unix_timestamp();
        let ctx = Ctx {
            dir: data_dir,
            keys: keys.as_ref(),
            td: trust_domain,
            ttl,
            upstream: upstream.as_deref(),
        };
        Ok(Authorities {
            x509: RwLock::new(Slots::load_or_create(&ctx, now)?),
            jwt: RwLock::new(Slots::load_or_create(&ctx, now)?),
            dir: data_dir.to_owned(),
            trust_domain: trust_domain.clone(),
            ttl,
            keys,
            upstream,
        })
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            dir: &self.dir,
            keys: self.keys.as_ref(),
            td: &self.trust_domain,
            ttl: self.ttl,
            upstream: self.upstream.as_deref(),
        }
    }

    /// The CA that signs X509-SVIDs now.
    pub fn ca(&self) -> Arc<Ca> {
        read(&self.x509).current.clone()
    }

    /// The key that signs JWT-SVIDs now.
    pub fn jwt(&self) -> Arc<JwtAuthority> {
        read(&self.jwt).current.clone()
    }

    /// The CAs to publish: the current one and, once prepared, the next one.
    pub fn x509_authorities(&self) -> Vec<Arc<Ca>> {
        read(&self.x509).both()
    }

    /// The JWT keys to publish: the current one and, once prepared, the next one.
    pub fn jwt_authorities(&self) -> Vec<Arc<JwtAuthority>> {
        read(&self.jwt).both()
    }

    /// How often [`Authorities::rotate`] should run: a sixtieth of the authorities' lifetime,
    /// between 1 and 10 seconds, so that even a short test TTL is rotated on time.
    pub fn check_interval(&self) -> Duration {
        (self.ttl / 60).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }

    /// Prepares or activates whatever is due at `now` (Unix seconds). A step that fails leaves
    /// the slots as they were; it is retried at the next check.
    pub fn rotate(&self, now: i64) -> Result<Rotation, CaError> {
        let ctx = self.ctx();
        let x509 = write(&self.x509).rotate(&ctx, now)?;
        let jwt = write(&self.jwt).rotate(&ctx, now)?;
        Ok(Rotation { x509, jwt })
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// What creating or loading an authority needs.
struct Ctx<'a> {
    dir: &'a Path,
    keys: &'a dyn KeyManager,
    td: &'a TrustDomain,
    ttl: Duration,
    upstream: Option<&'a DiskUpstream>,
}

/// The key names and public file names of one kind of authority.
struct Files {
    key: &'static str,
    public: &'static str,
    next_key: &'static str,
    next_public: &'static str,
}

/// What the authority manager needs of a kind of authority.
trait Authority: Sized {
    /// For logs: "X.509 CA", "JWT key".
    const KIND: &'static str;
    const FILES: Files;
    /// Creates a new key named `key` in the key manager and an authority over it.
    fn generate(ctx: &Ctx<'_>, key: &str, now: i64) -> Result<Self, CaError>;
    /// Writes the public half.
    fn store(&self, public: &Path) -> Result<(), CaError>;
    fn load(ctx: &Ctx<'_>, key: &str, public: &Path) -> Result<Self, CaError>;
    fn not_before(&self) -> i64;
    fn not_after(&self) -> i64;
}

impl Authority for Ca {
    const KIND: &'static str = "X.509 CA";
    const FILES: Files = Files {
        key: "ca-key",
        public: "ca-cert.pem",
        next_key: "ca-next-key",
        next_public: "ca-next-cert.pem",
    };

    fn generate(ctx: &Ctx<'_>, key: &str, now: i64) -> Result<Self, CaError> {
        let now = time::OffsetDateTime::from_unix_timestamp(now)
            .map_err(|e| CaError::InvalidTtl(format!("the clock is out of range: {e}")))?;
        // Read the upstream first: a failure then leaves no key behind.
        let upstream = ctx.upstream.map(DiskUpstream::credentials);
        Ca::generate(
            ctx.td,
            ctx.keys.generate(key)?,
            ctx.ttl,
            now,
            upstream.as_deref(),
        )
    }

    fn store(&self, public: &Path) -> Result<(), CaError> {
        Ca::store(self, public)
    }

    fn load(ctx: &Ctx<'_>, key: &str, public: &Path) -> Result<Self, CaError> {
        Ca::load(public, ctx.keys, key, ctx.td)
    }

    fn not_before(&self) -> i64 {
        Ca::not_before(self)
    }

    fn not_after(&self) -> i64 {
        Ca::not_after(self)
    }
}

impl Authority for JwtAuthority {
    const KIND: &'static str = "JWT key";
    const FILES: Files = Files {
        key: "jwt-key",
        public: "jwt-key.json",
        next_key: "jwt-next-key",
        next_public: "jwt-next-key.json",
    };

    fn generate(ctx: &Ctx<'_>, key: &str, now: i64) -> Result<Self, CaError> {
        JwtAuthority::generate(ctx.td, ctx.keys.generate(key)?, ctx.ttl, now)
    }

    fn store(&self, public: &Path) -> Result<(), CaError> {
        JwtAuthority::store(self, public)
    }

    fn load(ctx: &Ctx<'_>, key: &str, public: &Path) -> Result<Self, CaError> {
        JwtAuthority::load(ctx.keys, key, public, ctx.td, ctx.ttl)
    }

    fn not_before(&self) -> i64 {
        JwtAuthority::not_before(self)
    }

    fn not_after(&self) -> i64 {
        JwtAuthority::not_after(self)
    }
}

/// The current and (once prepared) next authority of one kind.
struct Slots<A> {
    current: Arc<A>,
    next: Option<Arc<A>>,
}

/// Where the four parts of one kind of authority live: key names in the key manager, public
/// files in the data directory.
struct Paths<'a> {
    keys: &'a dyn KeyManager,
    key: &'static str,
    public: PathBuf,
    next_key: &'static str,
    next_public: PathBuf,
}

impl<'a> Paths<'a> {
    fn of<A: Authority>(ctx: &Ctx<'a>) -> Paths<'a> {
        Paths {
            keys: ctx.keys,
            key: A::FILES.key,
            public: ctx.dir.join(A::FILES.public),
            next_key: A::FILES.next_key,
            next_public: ctx.dir.join(A::FILES.next_public),
        }
    }

    /// Moves the next slot over the current one: the key first (see the module docs).
    fn activate(&self) -> Result<(), CaError> {
        self.keys.rename(self.next_key, self.key)?;
        storage::rename_durably(&self.next_public, &self.public)
    }
}

impl<A: Authority> Slots<A> {
    fn both(&self) -> Vec<Arc<A>> {
        std::iter::once(self.current.clone())
            .chain(self.next.clone())
            .collect()
    }

    fn load_or_create(ctx: &Ctx<'_>, now: i64) -> Result<Slots<A>, CaError> {
        let paths = Paths::of::<A>(ctx);
        let has = |p: &Path| storage::exists(p);
        let has_key = |k: &str| ctx.keys.exists(k);

        if !has_key(paths.next_key)? && has(&paths.next_public)? {
            tracing::warn!(kind = A::KIND, "completing an interrupted activation");
            storage::rename_durably(&paths.next_public, &paths.public)?;
        }
        if has_key(paths.next_key)? && !has(&paths.next_public)? {
            tracing::warn!(kind = A::KIND, "discarding an interrupted preparation");
            ctx.keys.remove(paths.next_key)?;
        }

        let mut next = None;
        if has_key(paths.next_key)? {
            let prepared = A::load(ctx, paths.next_key, &paths.next_public)?;
            if prepared.not_after() > now {
                next = Some(prepared);
            } else {
                tracing::warn!(kind = A::KIND, "discarding an expired prepared authority");
                storage::remove_if_exists(&paths.next_public)?;
                ctx.keys.remove(paths.next_key)?;
            }
        }

        let stored = match (has_key(paths.key)?, has(&paths.public)?) {
            (true, true) => Some(A::load(ctx, paths.key, &paths.public)?),
            (false, false) => None,
            (true, false) => {
                return Err(CaError::Corrupt(format!(
                    "the {} key {} ({}) exists but {} is missing; move the key away to create \
                     a new {}",
                    A::KIND,
                    paths.key,
                    ctx.keys.kind(),
                    paths.public.display(),
                    A::KIND
                )));
            }
            (false, true) => {
                return Err(CaError::Corrupt(format!(
                    "{} exists but its key {} is missing from the {} key manager; move it away \
                     to create a new {}",
                    paths.public.display(),
                    paths.key,
                    ctx.keys.kind(),
                    A::KIND
                )));
            }
        };
        let current = match stored {
            Some(current) if current.not_after() > now => current,
            stored => {
                if stored.is_some() {
                    tracing::warn!(kind = A::KIND, "the stored authority has expired");
                }
                match next.take() {
                    Some(prepared) => {
                        paths.activate()?;
                        tracing::info!(kind = A::KIND, "activated the prepared authority");
                        prepared
                    }
                    None => {
                        let created = A::generate(ctx, paths.key, now)?;
                        created.store(&paths.public)?;
                        tracing::info!(
                            kind = A::KIND,
                            not_after = created.not_after(),
                            "created a new authority"
                        );
                        created
                    }
                }
            }
        };
        Ok(Slots {
            current: Arc::new(current),
            next: next.map(Arc::new),
        })
    }

    /// Prepares the next authority, or activates it, if due at `now`. A prepared authority is
    /// never activated in the same call, so the caller publishes it first.
    fn rotate(&mut self, ctx: &Ctx<'_>, now: i64) -> Result<Step, CaError> {
        let (not_before, not_after) = (self.current.not_before(), self.current.not_after());
        let paths = Paths::of::<A>(ctx);
        match &self.next {
            Some(next) if now >= activate_at(not_before, not_after) => {
                paths.activate()?;
                self.current = next.clone();
                self.next = None;
                tracing::info!(
                    kind = A::KIND,
                    not_after = self.current.not_after(),
                    "activated the next authority"
                );
                Ok(Step::Activated)
            }
            None if now >= prepare_at(not_before, not_after) => {
                let next = A::generate(ctx, paths.next_key, now)?;
                next.store(&paths.next_public)?;
                tracing::info!(
                    kind = A::KIND,
                    not_after = next.not_after(),
                    activates_at = activate_at(not_before, not_after),
                    "prepared the next authority"
                );
                self.next = Some(Arc::new(next));
                Ok(Step::Prepared)
            }
            _ => Ok(Step::Unchanged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").expect("td")
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn schedule_is_spires() {
        let day = 24 * 3600;
        // 24h: prepare at 12h, activate at 20h.
        assert_eq!(prepare_at(0, day), 12 * 3600);
        assert_eq!(activate_at(0, day), 20 * 3600);
        // Long lifetimes are capped at 30 and 7 days before expiry.
        let year = 365 * day;
        assert_eq!(prepare_at(0, year), year - 30 * day);
        assert_eq!(activate_at(0, year), year - 7 * day);
    }

    #[test]
    fn first_start_creates_then_reuses_both_authorities() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("create");
        for file in ["ca-key.pem", "jwt-key.pem"] {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dir.path().join(file))
                    .expect("key file")
                    .permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let again = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("load");
        assert_eq!(again.ca().cert_der(), first.ca().cert_der());
        assert_eq!(again.jwt().key_id(), first.jwt().key_id());
        assert_eq!(again.jwt().not_before(), first.jwt().not_before());
        assert_eq!(first.x509_authorities().len(), 1);
    }

    #[test]
    fn prepares_then_activates_and_survives_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("create");
        let ca = auth.ca();
        let (ca_nb, ca_na) = (ca.not_before(), ca.not_after());
        let (jwt_nb, jwt_na) = (auth.jwt().not_before(), auth.jwt().not_after());
        let prepare = prepare_at(ca_nb, ca_na).max(prepare_at(jwt_nb, jwt_na));
        let activate = (
            activate_at(ca_nb, ca_na).min(activate_at(jwt_nb, jwt_na)),
            activate_at(ca_nb, ca_na).max(activate_at(jwt_nb, jwt_na)),
        );

        assert_eq!(auth.rotate(ca_nb + 60).expect("early"), Rotation::default());
        let prepared = auth.rotate(prepare).expect("prepare");
        assert_eq!(prepared.x509, Step::Prepared);
        assert_eq!(prepared.jwt, Step::Prepared);
        assert_eq!(auth.x509_authorities().len(), 2);
        assert_eq!(auth.jwt_authorities().len(), 2);
        assert_eq!(auth.ca().cert_der(), ca.cert_der(), "not active yet");
        let next_ca = auth.x509_authorities()[1].cert_der().to_vec();
        let next_kid = auth.jwt_authorities()[1].key_id().to_owned();

        // A restart between preparation and activation keeps the prepared authorities.
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("reload");
        assert_eq!(auth.x509_authorities()[1].cert_der(), next_ca.as_slice());
        assert_eq!(
            auth.rotate(activate.0 - 1).expect("wait"),
            Rotation::default()
        );
        let activated = auth.rotate(activate.1).expect("activate");
        assert_eq!(activated.x509, Step::Activated);
        assert_eq!(activated.jwt, Step::Activated);
        assert_eq!(auth.ca().cert_der(), next_ca.as_slice());
        assert_eq!(auth.jwt().key_id(), next_kid);
        assert_eq!(auth.x509_authorities().len(), 1);

        // And after one.
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("reload");
        assert_eq!(auth.ca().cert_der(), next_ca.as_slice());
        assert_eq!(auth.jwt().key_id(), next_kid);
        assert!(!dir.path().join("ca-next-key.pem").exists());
    }

    #[test]
    fn interrupted_steps_are_completed_or_discarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("create");
        let (ca, jwt) = (auth.ca(), auth.jwt());
        let prepare = prepare_at(ca.not_before(), ca.not_after())
            .max(prepare_at(jwt.not_before(), jwt.not_after()));
        auth.rotate(prepare).expect("prepare");
        let next_ca = auth.x509_authorities()[1].cert_der().to_vec();
        let next_kid = auth.jwt_authorities()[1].key_id().to_owned();
        drop(auth);

        // Activation interrupted after the key was renamed into place.
        let path = |f: &str| dir.path().join(f);
        std::fs::rename(path("ca-next-key.pem"), path("ca-key.pem")).expect("rename");
        std::fs::rename(path("jwt-next-key.pem"), path("jwt-key.pem")).expect("rename");
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("complete");
        assert_eq!(auth.ca().cert_der(), next_ca.as_slice());
        assert_eq!(auth.jwt().key_id(), next_kid);
        assert_eq!(auth.x509_authorities().len(), 1);

        // Preparation interrupted before the certificate was written.
        std::fs::copy(path("ca-key.pem"), path("ca-next-key.pem")).expect("copy");
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("discard");
        assert_eq!(auth.x509_authorities().len(), 1);
        assert!(!path("ca-next-key.pem").exists());
    }

    #[test]
    fn an_expired_authority_is_replaced_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = super::super::now().unix_timestamp();
        let keys = DiskKeyManager::new(dir.path());
        let old = Ca::generate(
            &td(),
            keys.generate("ca-key").expect("key"),
            Duration::from_secs(1),
            time::OffsetDateTime::from_unix_timestamp(now - 100).expect("time"),
            None,
        )
        .expect("old CA");
        Authority::store(&old, &dir.path().join("ca-cert.pem")).expect("store");
        let auth = Authorities::load_or_create(dir.path(), &td(), HOUR).expect("replace");
        assert_ne!(auth.ca().cert_der(), old.cert_der());
        assert!(auth.ca().not_after() > now);
    }

    #[test]
    fn a_lone_certificate_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        Authorities::load_or_create(dir.path(), &td(), HOUR).expect("create");
        std::fs::remove_file(dir.path().join("ca-key.pem")).expect("rm");
        let err = Authorities::load_or_create(dir.path(), &td(), HOUR).expect_err("corrupt");
        assert!(matches!(err, CaError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("ca-key"), "{err}");
    }

    #[test]
    fn check_interval_fits_short_and_long_ttls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = Authorities::load_or_create(dir.path(), &td(), Duration::from_secs(20))
            .expect("create");
        assert_eq!(short.check_interval(), Duration::from_secs(1));
        let long = Authorities {
            ttl: Duration::from_secs(86400),
            ..short
        };
        assert_eq!(long.keys.kind(), "disk");
        assert_eq!(long.check_interval(), Duration::from_secs(10));
    }
}
