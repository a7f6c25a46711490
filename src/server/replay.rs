//! Replays over REST: compute a projection (or pipeline) again in the background from
//! a position or a time, watch its progress, cancel it.
//!
//! ```text
//! POST   /replay                {"projection_name", "from_timestamp" | "from_position",
//!                                "config": {"batch_size", "emit_progress"}}   202
//! GET    /replay                every replay
//! GET    /replay/{id}           one replay: status, percent, events_per_second
//! POST   /replay/{id}/cancel    cancel it; the projection stays as it was
//! DELETE /replay/{id}           cancel it if it runs, and forget it
//! ```

use allsource_operators::{ReplayFrom, ReplayInfo};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::pipelines::of;
use super::{AppState, TENANT, body_json, parse_time, render_time};

/// `POST /replay` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayIn {
    /// The projection (or pipeline) to compute again.
    projection_name: String,
    /// Start at the first event ingested at or after this RFC 3339 time.
    from_timestamp: Option<String>,
    /// Start at this log position.
    from_position: Option<u64>,
    #[serde(default)]
    config: ReplayConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ReplayConfig {
    /// The most events fed to the projection at a time.
    batch_size: usize,
    /// Log progress every second.
    emit_progress: bool,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            emit_progress: false,
        }
    }
}

fn replay_json(info: &ReplayInfo) -> Value {
    json!({
        "replay_id": info.id,
        "projection_name": info.name,
        "status": info.status,
        "error": info.error,
        "from_position": info.from_position,
        "to_position": info.to_position,
        "position": info.position,
        "events": info.events,
        "events_per_second": info.events_per_second,
        "percent": info.percent,
        "started_at": render_time(info.started_at_micros),
        "finished_at": info.finished_at_micros.map(render_time),
    })
}

/// `POST /replay`: start a replay (202, with its id).
pub(crate) async fn start(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: ReplayIn = body_json(&body)?;
    let from = match (&request.from_timestamp, request.from_position) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_parameter(
                "give from_timestamp or from_position, not both",
            ));
        }
        (Some(time), None) => {
            ReplayFrom::IngestedAt(parse_time(time).map_err(ApiError::bad_parameter)?)
        }
        (None, position) => ReplayFrom::Position(position.unwrap_or(0)),
    };
    let info = of(&app)?.replay(
        TENANT,
        &request.projection_name,
        from,
        request.config.batch_size,
        request.config.emit_progress,
    )?;
    Ok((StatusCode::ACCEPTED, Json(replay_json(&info))))
}

/// `GET /replay`.
pub(crate) async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let replays: Vec<Value> = of(&app)?.replays(TENANT).iter().map(replay_json).collect();
    Ok(Json(json!({"count": replays.len(), "replays": replays})))
}

fn no_replay(id: &str) -> ApiError {
    ApiError::not_found(format!("no replay {id}"))
}

/// `GET /replay/{id}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?
        .replay_info(TENANT, &id)
        .ok_or_else(|| no_replay(&id))?;
    Ok(Json(replay_json(&info)))
}

/// `POST /replay/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?
        .cancel_replay(TENANT, &id)
        .await
        .ok_or_else(|| no_replay(&id))?;
    Ok(Json(replay_json(&info)))
}

/// `DELETE /replay/{id}`.
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?
        .delete_replay(TENANT, &id)
        .await
        .ok_or_else(|| no_replay(&id))?;
    Ok(Json(replay_json(&info)))
}
