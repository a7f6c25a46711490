//! The Arrow Flight SQL service: ad-hoc and prepared EventQL statements, catalog
//! metadata for ADBC/JDBC/BI tools, DoPut ingest of Arrow batches and live tails.
//!
//! A thin adapter at the edge: it translates Flight calls into engine and EventQL
//! calls and maps errors to `tonic::Status` in one place. The service arrives with the
//! Flight SQL work; dependencies point inward only (`flight` -> `engine`).
