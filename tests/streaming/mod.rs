//! Streaming pipelines: windowed results against the same query run in batch.

mod oracle;
mod registry;
