//! What can go wrong with a query, typed so that servers map it to a status once.

/// An EventQL error.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not valid EventQL.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The statement would change something or read outside the log; API users get
    /// read-only queries.
    #[error("{0} is not allowed: EventQL queries are read-only (SELECT, WITH, EXPLAIN)")]
    ReadOnly(String),
    /// Planning or running the query failed (unknown column, type mismatch, ...).
    #[error("{0}")]
    Plan(String),
    /// The query needed more memory than its limit.
    #[error("the query exceeded its memory limit of {limit_bytes} bytes: {detail}")]
    MemoryLimit {
        /// The limit.
        limit_bytes: usize,
        /// DataFusion's message.
        detail: String,
    },
    /// The query ran longer than its time limit and was cancelled.
    #[error("the query was cancelled after its time limit of {0:?}")]
    Timeout(std::time::Duration),
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] allsource_engine::Error),
}

impl QueryError {
    pub(crate) fn from_datafusion(
        err: datafusion::error::DataFusionError,
        limit_bytes: usize,
    ) -> Self {
        use datafusion::error::DataFusionError as E;
        match err.find_root() {
            E::ResourcesExhausted(detail) => QueryError::MemoryLimit {
                limit_bytes,
                detail: detail.clone(),
            },
            E::SQL(e, _) => QueryError::Syntax(e.to_string()),
            E::External(e) if e.is::<allsource_engine::Error>() => QueryError::Plan(e.to_string()),
            _ => QueryError::Plan(err.to_string()),
        }
    }
}
