//! Shared helpers for the integration tests.

use std::path::Path;

use allsource::engine::{
    AppendRequest, AppendResult, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};

/// A store in `dir` with the given durability.
pub fn open(dir: &Path, durability: Durability) -> EventStore {
    EventStore::open(StoreConfig::new(dir).with_durability(durability))
        .unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

/// An event with a small JSON payload carrying `n`.
pub fn event(event_type: &str, n: u64) -> EventData {
    EventData::new(
        event_type,
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(40)),
    )
}

/// Append `events` to one stream of tenant `t`.
pub async fn append(
    store: &EventStore,
    entity_id: &str,
    expected: ExpectedVersion,
    events: Vec<EventData>,
) -> allsource::engine::Result<AppendResult> {
    store
        .append(AppendRequest::new("t").stream(entity_id, expected, events))
        .await
}

/// Append events `0..n` one per request, event `i` to stream `{prefix}{i % streams}`.
pub async fn fill(store: &EventStore, n: u64, prefix: &str, streams: u64) {
    for i in 0..n {
        let entity_id = format!("{prefix}{}", i % streams);
        append(store, &entity_id, ExpectedVersion::Any, vec![event("x", i)])
            .await
            .unwrap_or_else(|e| panic!("appending event {i}: {e}"));
    }
}

/// The WAL segment files of a store (not the spare files kept for reuse), by name.
pub fn wal_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with("spare-"))
        })
        .collect();
    segments.sort();
    segments
}

/// The spare WAL files of a store: dropped segments kept for reuse.
pub fn wal_spares(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("spare-"))
        })
        .count()
}

/// The path of the only (or newest) WAL segment of a store.
pub fn newest_segment(dir: &Path) -> std::path::PathBuf {
    wal_segments(dir)
        .pop()
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()))
}
