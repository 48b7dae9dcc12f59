//! The authorisation table: every route, every action, and what its caller must hold.
//!
//! | route | action | requirement |
//! |---|---|---|
//! | `/v1/store/secrets` | put, patch, delete, undelete, destroy | `write` on the body's path |
//! | `/v1/store/secrets` | get | `read` on the body's path |
//! | `/v1/store/secrets` | list | anyone; sees only paths it may `read` |
//! | `/v1/store/secrets/metadata` | get | `read` on the body's path |
//! | `/v1/store/secrets/metadata` | put (update), delete | `write` on the body's path |
//! | `/v1/acl/policy` | put, delete | `write` on `spike/system/acl` |
//! | `/v1/acl/policy` | get | `read` on `spike/system/acl` |
//! | `/v1/acl/policy` | list | `list` on `spike/system/acl` |
//! | `/v1/operator/recover` | - | the recover role |
//! | `/v1/operator/restore` | - | the restore role |
//! | `/v1/operator/rotate` | - | the superuser role |
//! | `/v1/operator/seal`, `/v1/operator/unseal` | - | the superuser role |
//! | `/v1/operator/rekey` | - | the superuser role |
//! | `/v1/cipher/encrypt`, `/v1/cipher/decrypt` | - | `execute` on `spike/system/cipher/exec`, or the lite role |
//! | `/v1/status` | - | anyone |
//!
//! The superuser holds every permission. "-" marks routes that take no `?action=`.

use nexus_api::routes::{self, Action};
use policies::{Permission, Role, SYSTEM_ACL_PATH, SYSTEM_CIPHER_EXEC_PATH};

/// What a caller must hold to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Any caller with an SVID of the trust domain or of a listed federated one (the TLS
    /// handshake checked that).
    Anyone,
    /// Exactly this role (roles are never granted through policies).
    Role(Role),
    /// A permission on an object, from a policy (or by being the superuser).
    Permission {
        /// The permission.
        permission: Permission,
        /// What it is on.
        on: Object,
    },
    /// Listing secrets: every caller may, and sees only the paths it may `read`.
    ReadableFilter,
}

/// What a [`Requirement::Permission`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// The secret path the request body names.
    BodyPath,
    /// A fixed system path.
    System(&'static str),
    /// A fixed system path, which this role also holds without any policy.
    SystemOrRole(&'static str, Role),
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The route (a constant of [`nexus_api::routes`]).
    pub route: &'static str,
    /// The action, for routes that take `?action=` (a missing one is [`Action::Put`]);
    /// `None` for routes that take none.
    pub action: Option<Action>,
    /// What the caller must hold.
    pub requirement: Requirement,
}

const fn rule(route: &'static str, action: Option<Action>, requirement: Requirement) -> Rule {
    Rule {
        route,
        action,
        requirement,
    }
}

const fn on_body(permission: Permission) -> Requirement {
    Requirement::Permission {
        permission,
        on: Object::BodyPath,
    }
}

const fn on_acl(permission: Permission) -> Requirement {
    Requirement::Permission {
        permission,
        on: Object::System(SYSTEM_ACL_PATH),
    }
}

const CIPHER: Requirement = Requirement::Permission {
    permission: Permission::Execute,
    on: Object::SystemOrRole(SYSTEM_CIPHER_EXEC_PATH, Role::Lite),
};

/// Every route and action the API serves, and what it requires. Nothing else is served.
pub const TABLE: &[Rule] = &[
    rule(
        routes::SECRETS,
        Some(Action::Put),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS,
        Some(Action::Get),
        on_body(Permission::Read),
    ),
    rule(
        routes::SECRETS,
        Some(Action::Delete),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS,
        Some(Action::Undelete),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS,
        Some(Action::Destroy),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS,
        Some(Action::List),
        Requirement::ReadableFilter,
    ),
    rule(
        routes::SECRETS,
        Some(Action::Patch),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS_METADATA,
        Some(Action::Get),
        on_body(Permission::Read),
    ),
    rule(
        routes::SECRETS_METADATA,
        Some(Action::Put),
        on_body(Permission::Write),
    ),
    rule(
        routes::SECRETS_METADATA,
        Some(Action::Delete),
        on_body(Permission::Write),
    ),
    rule(routes::POLICY, Some(Action::Put), on_acl(Permission::Write)),
    rule(routes::POLICY, Some(Action::Get), on_acl(Permission::Read)),
    rule(
        routes::POLICY,
        Some(Action::Delete),
        on_acl(Permission::Write),
    ),
    rule(routes::POLICY, Some(Action::List), on_acl(Permission::List)),
    rule(routes::RECOVER, None, Requirement::Role(Role::Recover)),
    rule(routes::RESTORE, None, Requirement::Role(Role::Restore)),
    rule(routes::ROTATE, None, Requirement::Role(Role::Superuser)),
    rule(routes::SEAL, None, Requirement::Role(Role::Superuser)),
    rule(routes::UNSEAL, None, Requirement::Role(Role::Superuser)),
    rule(routes::REKEY, None, Requirement::Role(Role::Superuser)),
    rule(routes::CIPHER_ENCRYPT, None, CIPHER),
    rule(routes::CIPHER_DECRYPT, None, CIPHER),
    rule(routes::STATUS, None, Requirement::Anyone),
];

/// What `action` on `route` requires; `None` if the table does not list it (and so it is
/// not served).
pub fn requirement(route: &str, action: Option<Action>) -> Option<Requirement> {
    TABLE
        .iter()
        .find(|rule| rule.route == route && rule.action == action)
        .map(|rule| rule.requirement)
}

/// The route of the table that is `path`, if any: the routes have no parameters, so a
/// request's path either is one of them or matches none.
pub fn route(path: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .map(|rule| rule.route)
        .find(|route| *route == path)
}

/// Every route of the table, once each, in table order.
pub fn routes() -> Vec<&'static str> {
    let mut routes: Vec<&'static str> = Vec::new();
    for rule in TABLE {
        if !routes.contains(&rule.route) {
            routes.push(rule.route);
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_classified_once_per_action() {
        for (i, rule) in TABLE.iter().enumerate() {
            assert!(
                !TABLE[..i]
                    .iter()
                    .any(|r| r.route == rule.route && r.action == rule.action),
                "{rule:?} is listed twice"
            );
            // A route either takes actions or does not; never both.
            assert!(
                TABLE
                    .iter()
                    .filter(|r| r.route == rule.route)
                    .all(|r| r.action.is_some() == rule.action.is_some()),
                "{}",
                rule.route
            );
        }
        let every_route = [
            routes::SECRETS,
            routes::SECRETS_METADATA,
            routes::POLICY,
            routes::RECOVER,
            routes::RESTORE,
            routes::ROTATE,
            routes::SEAL,
            routes::UNSEAL,
            routes::REKEY,
            routes::CIPHER_ENCRYPT,
            routes::CIPHER_DECRYPT,
            routes::STATUS,
        ];
        assert_eq!(routes(), every_route);
    }

    #[test]
    fn lookups_follow_the_table() {
        assert_eq!(
            requirement(routes::SECRETS, Some(Action::Get)),
            Some(on_body(Permission::Read))
        );
        assert_eq!(
            requirement(routes::SECRETS, Some(Action::List)),
            Some(Requirement::ReadableFilter)
        );
        for route in [routes::ROTATE, routes::SEAL, routes::UNSEAL, routes::REKEY] {
            assert_eq!(
                requirement(route, None),
                Some(Requirement::Role(Role::Superuser))
            );
        }
        // Unclassified actions and routes are not served.
        for action in [Action::Put, Action::Delete] {
            assert_eq!(
                requirement(routes::SECRETS_METADATA, Some(action)),
                Some(on_body(Permission::Write))
            );
        }
        for action in [
            Action::Undelete,
            Action::Destroy,
            Action::List,
            Action::Patch,
        ] {
            assert_eq!(requirement(routes::SECRETS_METADATA, Some(action)), None);
        }
        for action in [Action::Undelete, Action::Destroy, Action::Patch] {
            assert_eq!(requirement(routes::POLICY, Some(action)), None);
        }
        for action in Action::ALL {
            assert_eq!(requirement(routes::RECOVER, Some(action)), None);
            assert_eq!(requirement("/v1/unknown", Some(action)), None);
        }
        assert_eq!(requirement(routes::SECRETS, None), None);
    }

    #[test]
    fn role_ids_reach_only_their_routes() {
        for rule in TABLE {
            if let Requirement::Role(role) = rule.requirement {
                assert!(
                    matches!(role, Role::Recover | Role::Restore | Role::Superuser),
                    "{rule:?}"
                );
            }
        }
        assert!(
            TABLE
                .iter()
                .filter(|r| matches!(
                    r.requirement,
                    Requirement::Permission {
                        on: Object::SystemOrRole(_, Role::Lite),
                        ..
                    }
                ))
                .all(|r| r.route.starts_with("/v1/cipher/")),
            "the lite role reaches the cipher only"
        );
    }
}
