//! The Arrow Flight SQL service: ad-hoc and prepared EventQL statements, catalog
//! metadata for ADBC/JDBC/BI tools, DoPut ingest of Arrow batches and live tails.
//!
//! A thin adapter at the edge: it translates Flight calls into engine and EventQL
//! calls and maps errors to `tonic::Status` in one place ([`error`]). Dependencies
//! point inward only (`flight` -> `sql` -> `engine`).
//!
//! - Statements: `GetFlightInfo(CommandStatementQuery)` plans the EventQL text and
//!   announces the exact result schema; `DoGet` on its ticket streams the batches as
//!   they are computed. Prepared statements take `$1`-style parameters.
//! - Catalog: one catalog `allsource`, one schema `public`, the tables `events`,
//!   `streams`, `partitions` and `files`.
//! - Ingest: DoPut with the path descriptor `events`, or Flight SQL bulk ingest into
//!   `events` ([`ingest`] describes the columns). One batch is one atomic append.
//! - Live tails: DoGet with a JSON ticket ([`tail`]): the events from a position on,
//!   or a pipeline's result rows as they are emitted.
//! - Auth: [`auth`]; without tokens every call acts for the tenant `default`.

pub mod auth;
pub mod error;
pub mod ingest;
mod service;
pub mod sql;
pub mod statement;
pub mod tail;

use std::future::Future;
use std::sync::Arc;

use allsource_engine::EventStore;
use allsource_operators::Pipelines;
use allsource_sql::EventQl;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;

pub use auth::Auth;
pub use error::FlightError;
pub use service::AllSourceFlight;
pub use sql::SqlService;

/// Largest message a client may send (a DoPut batch): 256 MiB.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The HTTP/2 receive window of one call to start with.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;

/// The gRPC service over `store` (and its `pipelines`, when it runs them).
pub fn service(
    store: EventStore,
    eventql: EventQl,
    auth: Auth,
    pipelines: Option<Arc<Pipelines>>,
) -> FlightServiceServer<AllSourceFlight> {
    let mut flight = AllSourceFlight::new(SqlService::new(store, eventql, auth));
    if let Some(pipelines) = pipelines {
        flight = flight.with_pipelines(pipelines);
    }
    FlightServiceServer::new(flight)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Serve Flight on `listener` until `shutdown` completes; calls in progress finish
/// first.
pub async fn serve(
    listener: TcpListener,
    store: EventStore,
    eventql: EventQl,
    auth: Auth,
    pipelines: Option<Arc<Pipelines>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    // HTTP/2 flow control: the default 64 KiB stream window holds a DoPut of
    // megabyte batches to one window per round trip, so calls start with 4 MiB. Not
    // adaptive windows: those start again from 64 KiB (they override the sizes set
    // here) and grow with a bandwidth-delay product measured by pings, which on
    // loopback with both cores busy came out anywhere from 0.7M to 3.8M events/s for
    // DoPuts that only decode their batches (2.9M-3.1M with fixed windows).
    tonic::transport::Server::builder()
        .http2_adaptive_window(Some(false))
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * STREAM_WINDOW_BYTES))
        .tcp_nodelay(true)
        .add_service(service(store, eventql, auth, pipelines))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
