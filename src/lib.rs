//! AllSource: an event store and stream-processing engine built on Apache DataFusion.
//!
//! This facade re-exports the workspace's crates and holds the command-line program
//! (`allsource serve`, `verify`, `query`, `import`, `export`) with its HTTP server. The event log itself lives in
//! [`engine`]; see [`engine::EventStore`].

pub mod cli;
pub mod config;
pub mod remote;
pub mod server;
pub mod transfer;

pub use allsource_engine as engine;
pub use allsource_flight as flight;
pub use allsource_operators as operators;
pub use allsource_sql as sql;
