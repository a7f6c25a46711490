//! Streaming pipelines: windowed results against the same query run in batch.

mod golden;
mod oracle;
mod registry;
