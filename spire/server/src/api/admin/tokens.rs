//! Join tokens: single-use secrets an agent attests with, optionally with an alias entry
//! for the agent they will name.

use spire_proto::server as pb;
use tonic::Status;

use crate::api::authz::AdminGrant;
use crate::api::datastore_status;
use crate::datastore::JoinToken;
use crate::entries;
use crate::state::ServerState;

/// Default join token lifetime, as SPIRE's.
pub const DEFAULT_TOKEN_TTL: i32 = 600;

/// Makes a token, and the alias entry if asked, in one transaction.
pub(super) async fn create(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::CreateJoinTokenRequest,
) -> Result<pb::JoinToken, Status> {
    let ttl = if req.ttl == 0 {
        DEFAULT_TOKEN_TTL
    } else {
        req.ttl
    };
    if !(1..=entries::MAX_TTL_SECS).contains(&ttl) {
        return Err(Status::invalid_argument(format!(
            "ttl must be between 1 and {} seconds",
            entries::MAX_TTL_SECS
        )));
    }
    let td = &state.config.trust_domain;
    let alias = if req.alias_spiffe_id.is_empty() {
        None
    } else {
        let id = entries::parse_id("spiffeID", &req.alias_spiffe_id, td)
            .map_err(Status::invalid_argument)?;
        Some(id)
    };
    let token = uuid::Uuid::new_v4().to_string();
    let agent_id = state
        .join_token_agent_id(&token)
        .map_err(Status::internal)?;
    let join_token = JoinToken {
        token: token.clone(),
        expires_at: state.clock.unix_seconds() + i64::from(ttl),
    };
    match alias {
        Some(alias) => {
            let entry = pb::Entry {
                spiffe_id: alias.to_string(),
                parent_id: agent_id.to_string(),
                selectors: vec![pb::Selector {
                    r#type: "spiffe_id".into(),
                    value: agent_id.to_string(),
                }],
                ..Default::default()
            };
            let entry = entries::validate(&entry, uuid::Uuid::new_v4().to_string(), td)
                .map_err(Status::invalid_argument)?;
            state
                .datastore
                .create_join_token_with_alias(&join_token, &entry)
                .await
                .map_err(datastore_status)?;
        }
        None => state
            .datastore
            .create_join_token(&join_token)
            .await
            .map_err(datastore_status)?,
    }
    Ok(pb::JoinToken {
        token,
        expires_at: join_token.expires_at,
    })
}
