//! Access-control policies for the secrets manager.
//!
//! The model is wire-compatible with SPIKE (`name`, `spiffeidPattern`,
//! `pathPattern`, `permissions`) but its semantics are stricter:
//!
//! * **Parse, don't validate.** A [`Policy`] is plain data; it only takes part
//!   in decisions once [`Policy::compile`] has checked it and turned it into a
//!   [`CompiledPolicy`]. Patterns are compiled with a size limit, so a
//!   pathological regex is rejected up front instead of at request time.
//! * **Anchored matching.** Every pattern is compiled as `^(?:pattern)$`, so
//!   `spiffe://td/app` never matches `spiffe://td/app-evil` by accident
//!   (SPIKE's substring matching was the subject of a security report).
//! * **Roles are not grantable.** SPIFFE IDs that belong to the system's own
//!   roles (Nexus, Keeper, Pilot superuser/recover/restore, bootstrap) are
//!   authorised by route elsewhere; [`PolicySet::check`] always denies them,
//!   whatever the policies say. See [`roles`].
//! * **Default deny.** Access is granted only when a policy matches both the
//!   caller and the path and grants the wanted permission (or `super`).

mod applicable;
pub mod permission;
pub mod policy;
pub mod roles;
pub mod set;

pub use permission::Permission;
pub use policy::{
    CompiledPolicy, MAX_NAME_LEN, MAX_PATTERN_LEN, Policy, PolicyError, REGEX_SIZE_LIMIT,
    validate_name,
};
pub use roles::{Role, RoleDomains, role_of};
pub use set::{PolicySet, ReadFilter};

/// Reserved pseudo-path guarding policy (ACL) management.
pub const SYSTEM_ACL_PATH: &str = "spike/system/acl";
/// Reserved pseudo-path guarding system-wide secret operations.
pub const SYSTEM_SECRET_PATH: &str = "spike/system/secret";
/// Reserved pseudo-path guarding the encryption-as-a-service (cipher) endpoint.
pub const SYSTEM_CIPHER_EXEC_PATH: &str = "spike/system/cipher/exec";
