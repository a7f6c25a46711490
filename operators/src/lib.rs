//! Streaming operators over the event log: continuous EventQL queries (pipelines)
//! with event-time windows and watermarks.
//!
//! A pipeline's query is planned by DataFusion once, on one partition, over a table
//! whose scans read the pipeline's current input ([`feed`]). The plan is cut at its
//! `GROUP BY`: the part below runs on every input batch, the windowed aggregate
//! ([`window_aggregate`] for `TUMBLE` and `HOP`, [`session_aggregate`] for `SESSION`)
//! keeps groups open until the [`watermark`] passes their window's end, and the part
//! above runs on the windows it emits ([`pipeline`]).
//! Dependencies point inward only (`operators` -> `sql` -> `engine`).

pub mod admission;
pub mod branch;
pub mod checkpoint;
pub mod ddl;
pub mod dedupe;
mod error;
pub mod feed;
mod groups;
pub mod operator_list;
pub mod pipeline;
pub mod projection;
pub mod registry;
pub mod replay;
pub mod running_aggregate;
pub mod session_aggregate;
pub mod source;
mod state;
mod stream_join;
pub mod throttle;
pub mod watermark;
pub mod window_aggregate;

pub use error::{Error, Result};
pub use pipeline::{LateData, Pipeline, PipelineOptions, PipelineStats, Snapshot};
pub use registry::{
    Kind, PipelineInfo, PipelineSpec, PipelineState, Pipelines, ReplayFrom, ReplayInfo,
    ReplayStatus,
};
