//! The event log: concurrency, crash safety, recovery, reading, a model test.

mod api;
mod concurrency;
mod crash;
mod faults;
mod model;
mod recovery;
mod s3;
mod serve;
mod tiering;

/// The `n` field of a test payload.
fn recovery_n(payload: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}"));
    value["n"].as_u64().unwrap_or(u64::MAX)
}
