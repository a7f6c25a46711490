//! Pipelines over REST: list, create (a name and an EventQL query), read, drop, their
//! stats, and reset. The same pipelines are managed with `CREATE PIPELINE` /
//! `DROP PIPELINE` / `SHOW PIPELINES` through `POST /query`.

use std::sync::Arc;

use allsource_operators::operator_list::OperatorPipeline;
use allsource_operators::{
    Kind, PipelineInfo, PipelineOptions, PipelineSpec, PipelineState, Pipelines,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AppState, TENANT, body_json, render_time};

/// The pipelines the server runs, or a 404 when it runs none.
pub(crate) fn of(app: &AppState) -> Result<&Arc<Pipelines>, ApiError> {
    app.pipelines
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server runs no pipelines"))
}

/// `POST /pipelines` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineIn {
    name: String,
    sql: String,
    /// `allowed_lateness`, `max_future_skew` (durations such as `"5s"`) and
    /// `late_data` (`"drop"` or `"table"`).
    #[serde(default)]
    options: allsource_operators::operator_list::Options,
    /// `false`: stored, not running, until enabled.
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

pub(crate) fn info_json(info: &PipelineInfo) -> Value {
    let state = state_name(info);
    let error = match &info.state {
        PipelineState::Failed { error } => Some(error.clone()),
        _ => None,
    };
    json!({
        "name": info.spec.name,
        "kind": info.spec.kind,
        "sql": info.spec.sql,
        "options": info.spec.options,
        "state": state,
        "error": error,
        "watermark": info.watermark_micros.map(render_time),
        "position": info.position,
        "stats": info.stats,
        "checkpoint": info.checkpoint,
        "from_position": info.spec.from_position,
    })
}

/// The tenant's pipelines (or projections: `kind`).
pub(crate) fn listed(app: &AppState, kind: Kind) -> Result<Vec<PipelineInfo>, ApiError> {
    let mut infos = of(app)?.list(TENANT);
    infos.retain(|i| i.spec.kind == kind);
    Ok(infos)
}

/// One pipeline (or projection: `kind`) of the tenant.
pub(crate) fn one(app: &AppState, kind: Kind, name: &str) -> Result<PipelineInfo, ApiError> {
    of(app)?
        .get(TENANT, name)
        .filter(|i| i.spec.kind == kind)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} named {name}")))
}

/// `GET /pipelines`.
pub(crate) async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let pipelines: Vec<Value> = listed(&app, Kind::Pipeline)?
        .iter()
        .map(info_json)
        .collect();
    Ok(Json(
        json!({"count": pipelines.len(), "pipelines": pipelines}),
    ))
}

/// `POST /pipelines`: check, store and start a pipeline (201).
pub(crate) async fn create(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let value: Value = body_json(&body)?;
    // A query ("sql"), or the operator-list format ("operators").
    let request: PipelineIn = if value.get("sql").is_some() {
        serde_json::from_value(value).map_err(|e| ApiError::malformed_json(&e))?
    } else {
        let listed: OperatorPipeline =
            serde_json::from_value(value).map_err(|e| ApiError::malformed_json(&e))?;
        PipelineIn {
            sql: listed.to_sql()?,
            options: listed.pipeline_options()?,
            name: listed.name,
            enabled: listed.enabled,
        }
    };
    created(
        &app,
        Kind::Pipeline,
        request.name,
        request.sql,
        &request.options,
        request.enabled,
    )
    .await
}

/// Check, store and start a pipeline or projection from a REST request (201).
pub(crate) async fn created(
    app: &AppState,
    kind: Kind,
    name: String,
    sql: String,
    options: &allsource_operators::operator_list::Options,
    enabled: bool,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut parsed = PipelineOptions::default();
    for (key, value) in &options.0 {
        allsource_operators::ddl::set_option(&mut parsed, key, value)?;
    }
    let spec = PipelineSpec {
        tenant: TENANT.to_string(),
        name,
        sql,
        options: parsed,
        kind,
        disabled: !enabled,
        ..PipelineSpec::default()
    };
    let info = of(app)?.create(spec).await?;
    Ok((StatusCode::CREATED, Json(info_json(&info))))
}

/// `GET /pipelines/{name}`.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(info_json(&one(&app, Kind::Pipeline, &name)?)))
}

/// `DELETE /pipelines/{name}`: stop it and forget it and its results.
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    of(&app)?
        .drop_pipeline(TENANT, Kind::Pipeline, &name)
        .await?;
    Ok(Json(json!({"name": name, "dropped": true})))
}

/// A pipeline's figures: its counters, watermark and how far it trails, and its last
/// checkpoint. `head` is the store's newest visible position.
pub(crate) fn stats_json(info: &PipelineInfo, head: u64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    json!({
        "name": info.spec.name,
        "state": state_name(info),
        "events_in": info.stats.events_in,
        "late_events": info.stats.late_events,
        "rows_out": info.stats.rows_out,
        "open_groups": info.stats.open_groups,
        "join_rows": info.stats.join_rows,
        "watermark": info.watermark_micros.map(render_time),
        "watermark_lag_seconds": info.watermark_micros.map(|w| (now - w) as f64 / 1e6),
        "position": info.position,
        "lag_events": head.saturating_sub(info.position),
        "checkpoint": info.checkpoint,
    })
}

fn state_name(info: &PipelineInfo) -> &'static str {
    match &info.state {
        PipelineState::Running => "running",
        PipelineState::Failed { .. } => "failed",
        PipelineState::Stopped => "stopped",
        PipelineState::Disabled => "disabled",
    }
}

/// `GET /pipelines/stats`: every pipeline's figures, and their totals.
pub(crate) async fn all_stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let head = app.store.stats().visible_position;
    let infos = listed(&app, Kind::Pipeline)?;
    let count = |state: &str| infos.iter().filter(|i| state_name(i) == state).count();
    let total = |f: fn(&PipelineInfo) -> u64| infos.iter().map(f).sum::<u64>();
    Ok(Json(json!({
        "count": infos.len(),
        "running": count("running"),
        "failed": count("failed"),
        "events_in": total(|i| i.stats.events_in),
        "late_events": total(|i| i.stats.late_events),
        "rows_out": total(|i| i.stats.rows_out),
        "pipelines": infos.iter().map(|i| stats_json(i, head)).collect::<Vec<_>>(),
    })))
}

/// `GET /pipelines/{name}/stats`.
pub(crate) async fn stats(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let head = app.store.stats().visible_position;
    Ok(Json(stats_json(&one(&app, Kind::Pipeline, &name)?, head)))
}

/// `PUT /pipelines/{name}/reset`: discard its results and checkpoints and run it
/// again from the beginning of the log.
pub(crate) async fn reset(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?.reset(TENANT, &name).await?;
    Ok(Json(info_json(&info)))
}

/// `POST /pipelines/{name}/enable`: run it again, from its last checkpoint.
pub(crate) async fn enable(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?.set_enabled(TENANT, &name, true).await?;
    Ok(Json(info_json(&info)))
}

/// `POST /pipelines/{name}/disable`: stop it; its table keeps its last checkpoint's
/// rows.
pub(crate) async fn disable(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = of(&app)?.set_enabled(TENANT, &name, false).await?;
    Ok(Json(info_json(&info)))
}
