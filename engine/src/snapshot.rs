//! Entity state and its snapshots.
//!
//! An entity's state is the JSON merge of its events' payloads in version order:
//! each payload is applied as a JSON merge patch (RFC 7396, [`crate::patch`]): objects
//! merge key by key, recursively; a `null` value removes the key; any other value
//! replaces what was there. A snapshot stores the state at one version in the table storage
//! (`snapshots/<tenant>/<entity_id>/<version, 20 digits>.json`), so computing a state
//! starts from the newest snapshot at or before the wanted time and merges only the
//! events after it. `as_of` is ingestion time, as everywhere in the store.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::patch;

/// Folder of the snapshots in the table storage.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// An entity's state at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// The stream's version the state includes (every event up to it).
    pub version: u64,
    /// When that version was ingested, microseconds since the Unix epoch.
    pub ingested_at_micros: i64,
    /// The merged payloads.
    pub state: Value,
}

/// `start` (or nothing) with `events` merged in, in order.
pub(crate) fn fold(
    start: Option<EntityState>,
    events: &[RecordedEvent],
) -> Result<Option<EntityState>> {
    let Some(newest) = events.last() else {
        return Ok(start);
    };
    let before = start.map_or(Value::Null, |s| s.state);
    let state = patch::fold_newest_first(before, events.iter().map(|e| e.payload.as_str()))
        .map_err(|e| {
            Error::Internal(format!(
                "stored payloads of {} up to version {} are not JSON: {e}",
                newest.entity_id, newest.version
            ))
        })?;
    Ok(Some(EntityState {
        version: newest.version,
        ingested_at_micros: newest.ingested_at_micros,
        state,
    }))
}

fn folder(tenant: &str, entity_id: &str) -> Path {
    Path::from_iter([SNAPSHOT_DIR, tenant, entity_id])
}

/// Store `state` as the snapshot of its version.
pub(crate) async fn save(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    entity_id: &str,
    state: &EntityState,
) -> Result<()> {
    let path = folder(tenant, entity_id).join(format!("{:020}.json", state.version));
    let json = serde_json::to_vec(state)
        .map_err(|e| Error::Internal(format!("encoding a snapshot: {e}")))?;
    store
        .put(&path, PutPayload::from(json))
        .await
        .map_err(|e| Error::storage(format!("writing {path}"), e))?;
    Ok(())
}

/// The versions that have a snapshot, ascending.
pub(crate) async fn versions(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    entity_id: &str,
) -> Result<Vec<u64>> {
    let prefix = folder(tenant, entity_id);
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::storage(format!("listing {prefix}"), e))?;
    let mut versions: Vec<u64> = objects
        .iter()
        .filter_map(|o| o.location.filename()?.strip_suffix(".json")?.parse().ok())
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// The snapshot of `version`.
pub(crate) async fn load(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    entity_id: &str,
    version: u64,
) -> Result<EntityState> {
    let path = folder(tenant, entity_id).join(format!("{version:020}.json"));
    crate::tier::read_json(store, &path).await
}
