//! Streaming operators over the event log: watermarks, tumbling / hopping / session
//! windows, dedupe, enrich, branch and throttle as DataFusion `ExecutionPlan`s, plus the
//! pipeline and projection runtime with exactly-once checkpoints.
//!
//! Sources tail the log through [`allsource_engine::EventStore::subscribe`]. The
//! operators arrive with the streaming work; dependencies point inward only
//! (`operators` -> `engine`).
