//! The one place engine and query errors become gRPC statuses.

use allsource_engine::ErrorKind;
use allsource_sql::QueryError;
use tonic::{Code, Status};

/// A failed Flight call: a status code and a message for the client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FlightError {
    code: Code,
    message: String,
}

impl FlightError {
    /// The client sent something malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }

    /// The client is not who it needs to be.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            code: Code::Unauthenticated,
            message: message.into(),
        }
    }

    /// The call names something this server does not do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            code: Code::Unimplemented,
            message: message.into(),
        }
    }

    /// The call names something that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: Code::NotFound,
            message: message.into(),
        }
    }

    /// The client fell too far behind (or asked for too much).
    pub fn exhausted(message: impl Into<String>) -> Self {
        Self {
            code: Code::ResourceExhausted,
            message: message.into(),
        }
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        self.code
    }
}

/// The status of an engine error of `kind`.
fn engine_code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::TooLarge => Code::ResourceExhausted,
        ErrorKind::Environment => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<allsource_engine::Error> for FlightError {
    fn from(err: allsource_engine::Error) -> Self {
        let code = engine_code(err.kind());
        if code == Code::Internal || code == Code::Unavailable {
            tracing::error!(error = %err, "flight call failed");
        }
        Self {
            code,
            message: err.to_string(),
        }
    }
}

impl From<QueryError> for FlightError {
    fn from(err: QueryError) -> Self {
        let code = match &err {
            QueryError::Syntax(_) | QueryError::Plan(_) => Code::InvalidArgument,
            QueryError::ReadOnly(_) => Code::PermissionDenied,
            QueryError::MemoryLimit { .. } => Code::ResourceExhausted,
            QueryError::Timeout(_) => Code::DeadlineExceeded,
            QueryError::Store(inner) => engine_code(inner.kind()),
        };
        Self {
            code,
            message: err.to_string(),
        }
    }
}

impl From<arrow::error::ArrowError> for FlightError {
    fn from(err: arrow::error::ArrowError) -> Self {
        Self::invalid(err.to_string())
    }
}

impl From<arrow_flight::error::FlightError> for FlightError {
    fn from(err: arrow_flight::error::FlightError) -> Self {
        match err {
            arrow_flight::error::FlightError::Tonic(status) => Self {
                code: status.code(),
                message: status.message().to_string(),
            },
            other => Self::invalid(other.to_string()),
        }
    }
}

impl From<FlightError> for Status {
    fn from(err: FlightError) -> Self {
        Status::new(err.code, err.message)
    }
}
