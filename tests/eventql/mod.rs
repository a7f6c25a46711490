//! EventQL end to end: the design notes' example against DuckDB over the same events,
//! with the events in the buffer, in Parquet, and split across both; JSON operators,
//! time travel, entity state, tenant scoping, pruning, rejected statements, limits.

mod duckdb;
mod language;
mod slt;
mod windows;
