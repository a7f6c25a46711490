//! Entity state (now or as of a time) and snapshots.

use allsource_engine::EntityState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, TENANT, body_json, parse_time, render_time};

/// `?as_of=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsOf {
    as_of: Option<String>,
}

fn state_json(entity_id: &str, state: &EntityState) -> Value {
    json!({
        "entity_id": entity_id,
        "version": state.version,
        "as_of": render_time(state.ingested_at_micros),
        "state": state.state,
    })
}

/// `GET /entities/{entity_id}/state[?as_of=]`: the merge of the entity's payloads.
pub(crate) async fn state(
    State(app): State<AppState>,
    Path(entity_id): Path<String>,
    params: Result<Query<AsOf>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let as_of = params
        .as_of
        .as_deref()
        .map(|t| parse_time(t).map_err(|m| ApiError::bad_parameter(format!("as_of: {m}"))))
        .transpose()?;
    match app.store.entity_state(TENANT, &entity_id, as_of).await? {
        Some(state) => Ok(Json(state_json(&entity_id, &state))),
        None => Err(ApiError::not_found(format!(
            "entity {entity_id:?} has no events{}",
            if as_of.is_some() { " at that time" } else { "" }
        ))),
    }
}

/// `GET /entities/{entity_id}/snapshot` and `GET /snapshots/{entity_id}/latest`:
/// the newest stored snapshot.
pub(crate) async fn latest_snapshot(
    State(app): State<AppState>,
    Path(entity_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.store.latest_snapshot(TENANT, &entity_id).await? {
        Some(state) => Ok(Json(state_json(&entity_id, &state))),
        None => Err(ApiError::not_found(format!(
            "entity {entity_id:?} has no snapshot"
        ))),
    }
}

/// The body of `POST /snapshots`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSnapshot {
    entity_id: String,
}

/// `POST /snapshots` `{"entity_id"}`: store a snapshot of the current state.
pub(crate) async fn create_snapshot(
    State(app): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|_| ApiError::body_too_large(app.max_body_bytes))?;
    let request: CreateSnapshot = body_json(&body)?;
    match app
        .store
        .create_snapshot(TENANT, &request.entity_id)
        .await?
    {
        Some(state) => Ok((
            StatusCode::CREATED,
            Json(state_json(&request.entity_id, &state)),
        )),
        None => Err(ApiError::not_found(format!(
            "entity {:?} has no events",
            request.entity_id
        ))),
    }
}

/// `?entity_id=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListSnapshots {
    entity_id: Option<String>,
}

/// `GET /snapshots?entity_id=`: the versions of the entity that have a snapshot.
pub(crate) async fn list_snapshots(
    State(app): State<AppState>,
    params: Result<Query<ListSnapshots>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let entity_id = params
        .entity_id
        .ok_or_else(|| ApiError::bad_parameter("entity_id is required"))?;
    let versions = app.store.snapshots(TENANT, &entity_id).await?;
    Ok(Json(json!({
        "entity_id": entity_id,
        "snapshots": versions.iter().map(|v| json!({"version": v})).collect::<Vec<_>>(),
        "count": versions.len(),
    })))
}
