//! The HTTP server: REST under `/api/v1` (the paths of the product's seed API),
//! GraphQL under `/graphql` (see `allsource_graphql`), `/health` and `/metrics`; a
//! WebSocket of live events.
//!
//! Handlers are thin: parse the request, call the store or EventQL, render JSON.
//! Every failure leaves through [`ApiError`], which owns the mapping from engine and
//! query errors to statuses. Until authentication exists every request acts for the
//! tenant `default`.

mod admin;
mod entities;
mod error;
mod events;
mod observe;
mod pipelines;
mod projections;
mod query;
mod replay;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use allsource_engine::EventStore;
use allsource_graphql::GraphqlLimits;
use allsource_operators::Pipelines;
use allsource_sql::{EventQl, QueryLimits};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;

/// The tenant every request acts for until authentication exists.
pub const TENANT: &str = "default";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    store: EventStore,
    eventql: EventQl,
    /// The store's pipelines, when the server runs them.
    pipelines: Option<Arc<Pipelines>>,
    started: Arc<Instant>,
    max_body_bytes: usize,
    graphql_limits: GraphqlLimits,
    /// Turns true when the server starts shutting down; long-lived connections
    /// (event streams) close on it.
    closing: Arc<watch::Sender<bool>>,
}

impl AppState {
    /// Serve `store`; request bodies up to `max_body_bytes`.
    pub fn new(store: EventStore, max_body_bytes: usize) -> Self {
        Self {
            eventql: EventQl::new(store.clone()),
            pipelines: None,
            store,
            started: Arc::new(Instant::now()),
            max_body_bytes,
            graphql_limits: GraphqlLimits::default(),
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Run EventQL queries under `limits` (replacing the defaults).
    pub fn with_query_limits(mut self, limits: QueryLimits) -> Self {
        self.eventql = self.eventql.with_limits(limits);
        self
    }

    /// Serve `pipelines`: their statements in queries, their REST resources, and their
    /// results as tables in every query.
    pub fn with_pipelines(mut self, pipelines: Arc<Pipelines>) -> Self {
        self.eventql = self
            .eventql
            .with_extra_tables(Arc::clone(&pipelines) as Arc<dyn allsource_sql::ExtraTables>);
        self.pipelines = Some(pipelines);
        self
    }

    /// Check GraphQL requests against `limits` (replacing the defaults).
    pub fn with_graphql_limits(mut self, limits: GraphqlLimits) -> Self {
        self.graphql_limits = limits;
        self
    }

    /// The EventQL instance the handlers query through (shared with the Flight
    /// service, so both run queries on one runtime under one set of limits).
    pub fn eventql(&self) -> &EventQl {
        &self.eventql
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    let api = Router::new()
        .route("/events", post(events::append))
        .route("/events/query", get(events::query))
        .route("/events/stream", get(stream::stream))
        .route("/entities/{entity_id}/state", get(entities::state))
        .route(
            "/entities/{entity_id}/snapshot",
            get(entities::latest_snapshot),
        )
        .route(
            "/snapshots",
            post(entities::create_snapshot).get(entities::list_snapshots),
        )
        .route(
            "/snapshots/{entity_id}/latest",
            get(entities::latest_snapshot),
        )
        .route("/stats", get(admin::stats))
        .route("/compaction/trigger", post(admin::compact))
        .route("/compaction/stats", get(admin::compaction_stats))
        .route("/query", post(query::run))
        .route("/pipelines", get(pipelines::list).post(pipelines::create))
        .route("/pipelines/stats", get(pipelines::all_stats))
        .route(
            "/pipelines/{name}",
            get(pipelines::get).delete(pipelines::delete),
        )
        .route("/pipelines/{name}/stats", get(pipelines::stats))
        .route(
            "/pipelines/{name}/reset",
            axum::routing::put(pipelines::reset),
        )
        .route("/pipelines/{name}/enable", post(pipelines::enable))
        .route("/pipelines/{name}/disable", post(pipelines::disable))
        .route(
            "/projections",
            get(projections::list).post(projections::create),
        )
        .route(
            "/projections/{name}",
            get(projections::get).delete(projections::delete),
        )
        .route("/projections/{name}/{key}", get(projections::row))
        .route("/replay", get(replay::list).post(replay::start))
        .route("/replay/{id}", get(replay::get).delete(replay::delete))
        .route("/replay/{id}/cancel", post(replay::cancel));
    let mut service =
        allsource_graphql::Service::new(state.store.clone(), state.eventql.clone(), TENANT);
    if let Some(pipelines) = &state.pipelines {
        service = service.with_pipelines(Arc::clone(pipelines));
    }
    let graphql = allsource_graphql::router(service, state.graphql_limits.clone());
    Router::new()
        .nest("/api/v1", api)
        .merge(graphql)
        .route("/health", get(admin::health))
        .route("/metrics", get(observe::metrics))
        .route_layer(middleware::from_fn(observe::track))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Serve HTTP on `listener` until `shutdown` resolves, then finish the requests in
/// flight and close the event streams.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    observe::install();
    let closing = Arc::clone(&state.closing);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.send_replace(true);
        })
        .await
}

/// Parse a JSON body, with the line and column of a syntax error.
fn body_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::malformed_json(&e))
}

/// An RFC 3339 time (`2024-01-15T10:00:00Z`) in microseconds since the Unix epoch.
fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2024-01-15T10:00:00Z ({e})"))
}

/// Microseconds since the Unix epoch as RFC 3339 UTC with microseconds.
fn render_time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}
