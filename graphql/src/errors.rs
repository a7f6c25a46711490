//! Engine and query errors as GraphQL errors: the message, and an
//! `extensions.code` clients can match on.
//!
//! | code | when |
//! |---|---|
//! | `WRONG_EXPECTED_VERSION` | the optimistic concurrency check failed; `currentVersion` holds the stream's version (null: no stream) |
//! | `BAD_USER_INPUT` | a malformed argument or event |
//! | `CONFLICT` | event ids reused by a request that is not a retry |
//! | `NOT_FOUND` | something asked for does not exist |
//! | `LIMIT_EXCEEDED` | a size, depth, complexity, alias, batch or time limit |
//! | `INTERNAL_SERVER_ERROR` | the store failed |

use allsource_engine::{Error as StoreError, ErrorKind};
use allsource_operators::Error as PipelineError;
use allsource_sql::QueryError;
use async_graphql::{Error, ErrorExtensions};

/// An error with `extensions.code`.
pub fn coded(code: &str, message: impl Into<String>) -> Error {
    let code = code.to_string();
    Error::new(message).extend_with(move |_, e| e.set("code", code.as_str()))
}

/// A malformed argument.
pub fn bad_input(message: impl Into<String>) -> Error {
    coded("BAD_USER_INPUT", message)
}

/// A store error.
pub fn store(err: StoreError) -> Error {
    if let StoreError::WrongExpectedVersion {
        entity_id,
        expected,
        current,
    } = &err
    {
        let (entity_id, expected, current) = (entity_id.clone(), expected.to_string(), *current);
        return Error::new(err.to_string()).extend_with(move |_, e| {
            e.set("code", "WRONG_EXPECTED_VERSION");
            e.set("entityId", entity_id.as_str());
            e.set("expectedVersion", expected.as_str());
            match current {
                Some(version) => e.set("currentVersion", version),
                None => e.set("currentVersion", async_graphql::Value::Null),
            }
        });
    }
    let code = match err.kind() {
        ErrorKind::InvalidInput => "BAD_USER_INPUT",
        ErrorKind::Conflict => "CONFLICT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::TooLarge => "LIMIT_EXCEEDED",
        ErrorKind::Environment | ErrorKind::Internal => "INTERNAL_SERVER_ERROR",
    };
    coded(code, err.to_string())
}

/// An EventQL error.
pub fn query(err: QueryError) -> Error {
    match err {
        QueryError::Store(err) => store(err),
        QueryError::MemoryLimit { .. } | QueryError::Timeout(_) => {
            coded("LIMIT_EXCEEDED", err.to_string())
        }
        QueryError::Syntax(_) | QueryError::ReadOnly(_) | QueryError::Plan(_) => {
            bad_input(err.to_string())
        }
    }
}

/// A pipeline or projection error.
pub fn pipeline(err: PipelineError) -> Error {
    match err {
        PipelineError::Query(err) => query(err),
        PipelineError::NotFound { .. } => coded("NOT_FOUND", err.to_string()),
        PipelineError::Invalid(_) | PipelineError::Exists { .. } => bad_input(err.to_string()),
        PipelineError::Conflict(_) => coded("CONFLICT", err.to_string()),
        PipelineError::Storage(_)
        | PipelineError::Execution(_)
        | PipelineError::Arrow(_)
        | PipelineError::Internal(_) => coded("INTERNAL_SERVER_ERROR", err.to_string()),
    }
}
