//! Projections over REST: list, create (a built-in by name, or a name and an EventQL
//! query), read, drop, and read one key's row. The same projections are managed with
//! `CREATE PROJECTION` / `DROP PROJECTION` / `SHOW PROJECTIONS` through `POST /query`.

use allsource_operators::projection::rows_json;
use allsource_operators::{Kind, projection};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::pipelines::{created, info_json, listed, of, one};
use super::{AppState, TENANT, body_json};

/// `POST /projections` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectionIn {
    name: String,
    /// Left out for a built-in projection.
    sql: Option<String>,
    /// As for pipelines (`checkpoint_interval`, …).
    #[serde(default)]
    options: allsource_operators::operator_list::Options,
    /// `false`: stored, not running, until enabled.
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// `GET /projections`.
pub(crate) async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let projections: Vec<Value> = listed(&app, Kind::Projection)?
        .iter()
        .map(info_json)
        .collect();
    Ok(Json(
        json!({"count": projections.len(), "projections": projections}),
    ))
}

/// `POST /projections`: check, store and start a projection (201).
pub(crate) async fn create(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: ProjectionIn = body_json(&body)?;
    let sql = match request.sql {
        Some(sql) => sql,
        None => projection::built_in(&request.name)
            .ok_or_else(|| {
                let names: Vec<&str> = projection::BUILT_IN.iter().map(|(n, _)| *n).collect();
                ApiError::bad_parameter(format!(
                    "{} is not a built-in projection ({}); give its \"sql\"",
                    request.name,
                    names.join(", ")
                ))
            })?
            .to_string(),
    };
    created(
        &app,
        Kind::Projection,
        request.name,
        sql,
        &request.options,
        request.enabled,
    )
    .await
}

/// `GET /projections/{name}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(info_json(&one(&app, Kind::Projection, &name)?)))
}

/// `DELETE /projections/{name}`.
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    of(&app)?
        .drop_pipeline(TENANT, Kind::Projection, &name)
        .await?;
    Ok(Json(json!({"name": name, "dropped": true})))
}

/// `GET /projections/{name}/{key}`: the key's current row, as a JSON object.
pub(crate) async fn row(
    State(app): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (schema, row) = of(&app)?.lookup(TENANT, &name, &key).await?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("{name} has no row for {key:?}")))?;
    let mut rows = rows_json(&schema, &[row])?;
    let row = rows
        .pop()
        .ok_or_else(|| ApiError::internal("a projection row rendered as nothing"))?;
    Ok(Json(Value::Object(row)))
}
