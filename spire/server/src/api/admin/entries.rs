//! Registration entries: create, update, delete, show, list and count.

use spire_proto::server as pb;
use tonic::Status;

use crate::api::authz::AdminGrant;
use crate::api::datastore_status;
use crate::datastore::{self, EntryFilter};
use crate::entries;
use crate::state::ServerState;

/// Creates an entry, with the given ID or a new one.
pub(super) async fn create(
    state: &ServerState,
    _admin: &AdminGrant,
    entry: pb::Entry,
) -> Result<pb::Entry, Status> {
    let id = if entry.id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        entries::validate_entry_id(&entry.id).map_err(Status::invalid_argument)?;
        entry.id.clone()
    };
    let entry = entries::validate(&entry, id, &state.config.trust_domain)
        .map_err(Status::invalid_argument)?;
    let created = state
        .datastore
        .create_entry(&entry)
        .await
        .map_err(datastore_status)?;
    tracing::info!(entry_id = %created.id, spiffe_id = %created.spiffe_id, "entry created");
    Ok(entries::to_proto(&created))
}

/// Replaces the entry with `entry.id`.
pub(super) async fn update(
    state: &ServerState,
    _admin: &AdminGrant,
    entry: pb::Entry,
) -> Result<pb::Entry, Status> {
    if entry.id.is_empty() {
        return Err(Status::invalid_argument(
            "entryID is required to update an entry",
        ));
    }
    let entry = entries::validate(&entry, entry.id.clone(), &state.config.trust_domain)
        .map_err(Status::invalid_argument)?;
    let updated = state
        .datastore
        .update_entry(&entry)
        .await
        .map_err(datastore_status)?;
    tracing::info!(entry_id = %updated.id, "entry updated");
    Ok(entries::to_proto(&updated))
}

pub(super) async fn delete(
    state: &ServerState,
    _admin: &AdminGrant,
    id: &str,
) -> Result<pb::Empty, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("entryID is required"));
    }
    state
        .datastore
        .delete_entry(id)
        .await
        .map_err(datastore_status)?;
    tracing::info!(entry_id = %id, "entry deleted");
    Ok(pb::Empty {})
}

pub(super) async fn get(
    state: &ServerState,
    _admin: &AdminGrant,
    id: &str,
) -> Result<pb::Entry, Status> {
    match state
        .datastore
        .get_entry(id)
        .await
        .map_err(datastore_status)?
    {
        Some(entry) => Ok(entries::to_proto(&entry)),
        None => Err(Status::not_found(format!("no entry with ID {id:?}"))),
    }
}

/// The entries matching every filter the request sets.
pub(super) async fn list(
    state: &ServerState,
    _admin: &AdminGrant,
    req: pb::ListEntriesRequest,
) -> Result<pb::ListEntriesResponse, Status> {
    let td = &state.config.trust_domain;
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let spiffe_id = non_empty(req.spiffe_id)
        .map(|s| entries::parse_id("spiffeID", &s, td).map(|id| id.to_string()))
        .transpose()
        .map_err(Status::invalid_argument)?;
    let parent_id = non_empty(req.parent_id)
        .map(|s| entries::parse_id("parentID", &s, td).map(|id| id.to_string()))
        .transpose()
        .map_err(Status::invalid_argument)?;
    let mut selectors = Vec::new();
    for s in req.selectors {
        s.validate()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        selectors.push(datastore::Selector {
            kind: s.r#type,
            value: s.value,
        });
    }
    let filter = EntryFilter {
        spiffe_id,
        parent_id,
        selectors,
    };
    let found = state
        .datastore
        .list_entries(&filter)
        .await
        .map_err(datastore_status)?;
    Ok(pb::ListEntriesResponse {
        entries: found.iter().map(entries::to_proto).collect(),
    })
}

pub(super) async fn count(
    state: &ServerState,
    _admin: &AdminGrant,
) -> Result<pb::CountResponse, Status> {
    let count = state
        .datastore
        .count_entries()
        .await
        .map_err(datastore_status)?;
    Ok(pb::CountResponse { count })
}
