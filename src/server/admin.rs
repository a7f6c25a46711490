//! Health, store figures and compaction.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// `GET /health`: the process answers, and whether the store accepts writes.
pub(crate) async fn health(State(app): State<AppState>) -> Json<Value> {
    let stats = app.store.stats();
    Json(json!({
        "status": if stats.tier.last_error.is_some() { "degraded" } else { "ok" },
        "uptime_seconds": app.started.elapsed().as_secs(),
        "store": {
            "events": stats.events,
            "streams": stats.streams,
            "partitions": stats.partitions,
            "durability": app.store.durability().to_string(),
            "tiering_error": stats.tier.last_error,
        },
    }))
}

/// `GET /stats`: every figure the store keeps.
pub(crate) async fn stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(app.store.stats())
        .map(Json)
        .map_err(|e| ApiError::internal(format!("rendering the stats: {e}")))
}

/// `POST /compaction/trigger`: run one compaction pass now.
pub(crate) async fn compact(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let report = app.store.compact().await?;
    serde_json::to_value(report)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("rendering the report: {e}")))
}

/// `GET /compaction/stats`: the table files and what compaction has done.
pub(crate) async fn compaction_stats(State(app): State<AppState>) -> Json<Value> {
    let tier = app.store.stats().tier;
    Json(json!({
        "files": tier.files,
        "file_bytes": tier.file_bytes,
        "compactions": tier.compactions,
        "files_compacted": tier.files_compacted,
        "retired_files": tier.retired_files,
        "footers_cached": tier.footers_cached,
        "manifest_version": tier.manifest_version,
    }))
}
