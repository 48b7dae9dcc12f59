//! Route paths and `?action=` values of the v1 API.

/// Secrets: put (no action), `get`, `patch`, `delete`, `undelete`, `destroy`, `list`.
pub const SECRETS: &str = "/v1/store/secrets";
/// Secret metadata: `get`, update (no action), `delete` (the whole secret).
pub const SECRETS_METADATA: &str = "/v1/store/secrets/metadata";
/// Policies: upsert (no action), `get`, `delete`, `list`.
pub const POLICY: &str = "/v1/acl/policy";
/// Break-glass: export all recovery shards.
pub const RECOVER: &str = "/v1/operator/recover";
/// Break-glass: submit one recovery shard.
pub const RESTORE: &str = "/v1/operator/restore";
/// Root key rotation (not in SPIKE). Only the Pilot superuser.
pub const ROTATE: &str = "/v1/operator/rotate";
/// Seal: drop the root key from memory until an unseal (not in SPIKE). Only the Pilot
/// superuser.
pub const SEAL: &str = "/v1/operator/seal";
/// Unseal: lift an operator's seal and rebuild the root key from the keepers (not in
/// SPIKE). Only the Pilot superuser.
pub const UNSEAL: &str = "/v1/operator/unseal";
/// Rekey: a new keeper set and Shamir threshold, optionally with a new root key (not in
/// SPIKE). Only the Pilot superuser.
pub const REKEY: &str = "/v1/operator/rekey";
/// Encryption as a service: encrypt (JSON or `application/octet-stream`).
pub const CIPHER_ENCRYPT: &str = "/v1/cipher/encrypt";
/// Encryption as a service: decrypt (JSON or `application/octet-stream`).
pub const CIPHER_DECRYPT: &str = "/v1/cipher/decrypt";
/// Initialisation, seal state and keeper reachability.
pub const STATUS: &str = "/v1/status";

/// Keeper: store the shard Nexus hands over (SPIKE's route).
pub const KEEPER_CONTRIBUTE: &str = "/v1/store/contribute";
/// Keeper: return the shard held (SPIKE's route).
pub const KEEPER_SHARD: &str = "/v1/store/shard";
/// Keeper: forget the shards of generations below the given one, or of every other one
/// (not in SPIKE; Nexus sends it after a rekey).
pub const KEEPER_RETAIN: &str = "/v1/store/retain";
/// Keeper: whether a shard is held (`GET`).
pub const KEEPER_HEALTH: &str = "/healthz";

/// The operation named by `?action=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No `action` parameter: create or update.
    Put,
    /// `get`
    Get,
    /// `delete` (soft)
    Delete,
    /// `undelete`
    Undelete,
    /// `destroy` (permanent; not in SPIKE)
    Destroy,
    /// `list`
    List,
    /// `patch`: merge keys into a new version (not in SPIKE)
    Patch,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 7] = [
        Action::Put,
        Action::Get,
        Action::Delete,
        Action::Undelete,
        Action::Destroy,
        Action::List,
        Action::Patch,
    ];

    /// Parses the `action` query value; `None` is a put. An unknown action is `Err` with the
    /// value as given.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("") => Ok(Action::Put),
            Some("get") => Ok(Action::Get),
            Some("delete") => Ok(Action::Delete),
            Some("undelete") => Ok(Action::Undelete),
            Some("destroy") => Ok(Action::Destroy),
            Some("list") => Ok(Action::List),
            Some("patch") => Ok(Action::Patch),
            Some(other) => Err(other.to_owned()),
        }
    }

    /// The query value (`None` for a put).
    pub fn as_query(self) -> Option<&'static str> {
        match self {
            Action::Put => None,
            Action::Get => Some("get"),
            Action::Delete => Some("delete"),
            Action::Undelete => Some("undelete"),
            Action::Destroy => Some("destroy"),
            Action::List => Some("list"),
            Action::Patch => Some("patch"),
        }
    }

    /// The path and query for this action on `route`.
    pub fn url(self, route: &str) -> String {
        match self.as_query() {
            Some(action) => format!("{route}?action={action}"),
            None => route.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_query()), Ok(action));
        }
        assert_eq!(Action::parse(Some("purge")), Err("purge".to_owned()));
        assert_eq!(Action::Get.url(SECRETS), "/v1/store/secrets?action=get");
        assert_eq!(Action::Put.url(POLICY), "/v1/acl/policy");
    }
}
