//! The operators' errors.

use allsource_sql::QueryError;

use crate::registry::Kind;

/// What went wrong compiling or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline's definition is not one a pipeline can run (the caller's fault).
    #[error("invalid pipeline: {0}")]
    Invalid(String),
    /// A pipeline or projection of that name exists already.
    #[error("the {kind} {name} exists already")]
    Exists {
        /// What exists: a pipeline or a projection.
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// No pipeline (or projection) of that name.
    #[error("no {kind} named {name}")]
    NotFound {
        /// What was looked for.
        kind: Kind,
        /// The name.
        name: String,
    },
    /// The request conflicts with work under way (a replay already running).
    #[error("{0}")]
    Conflict(String),
    /// The table storage failed (the environment's fault).
    #[error("pipeline storage failed: {0}")]
    Storage(String),
    /// Planning the pipeline's query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Running the pipeline's plan failed.
    #[error("pipeline execution failed: {0}")]
    Execution(#[from] datafusion::error::DataFusionError),
    /// An Arrow kernel failed.
    #[error("pipeline execution failed: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A bug: the operators broke one of their own rules.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Results of the operators.
pub type Result<T, E = Error> = std::result::Result<T, E>;
