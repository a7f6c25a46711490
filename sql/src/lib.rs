//! EventQL: AllSource's query language, compiled into DataFusion logical plans.
//!
//! EventQL is DataFusion SQL with a PostgreSQL flavour plus what event data needs
//! (`payload->>'k'`, `AS OF TIMESTAMP`, `entity_state(..)`, window table functions and
//! `CREATE PIPELINE | PROJECTION`). This crate only plans; it owns no data. The tables
//! it plans against are provided by [`allsource_engine`].
//!
//! The planner arrives with the query-layer work; until then this crate states its
//! place in the workspace and the direction of its dependencies (`sql` -> `engine`).
