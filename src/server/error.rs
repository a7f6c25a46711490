//! Every failure of the HTTP API as one JSON shape, and the one place where engine
//! and query errors become HTTP statuses.
//!
//! ```json
//! {"error": {"code": "conflict", "message": "…", "details": {"current_version": 3}}}
//! ```

use allsource_engine::Error as StoreError;
use allsource_operators::Error as PipelineError;
use allsource_sql::QueryError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: status, a stable machine-readable code, a sentence, details.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400: a parameter is missing or malformed.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_parameter", message)
    }

    /// 400: the body is not valid JSON; details carry the line and column.
    pub fn malformed_json(err: &serde_json::Error) -> Self {
        let code = if err.is_data() {
            "invalid_body"
        } else {
            "malformed_json"
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("request body: {err}"),
        )
        .with_details(json!({"line": err.line(), "column": err.column()}))
    }

    /// 413: the body is over the limit.
    pub fn body_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the limit of {limit_bytes} bytes"),
        )
        .with_details(json!({"limit_bytes": limit_bytes}))
    }

    /// 422: an event is invalid before it reaches the store.
    pub fn invalid_event(index: usize, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            format!("invalid event #{index}: {reason}"),
        )
        .with_details(json!({"index": index}))
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: a failure of ours.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The status sent.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        } else {
            tracing::warn!(code = self.code, message = %self.message, "request refused");
        }
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "details": self.details,
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::InvalidEvent { index, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
                    .with_details(json!({"index": index}))
            }
            StoreError::InvalidRequest(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", message)
            }
            StoreError::TooLarge {
                index,
                field,
                size,
                limit,
            } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message).with_details(
                json!({"index": index, "field": field, "size_bytes": size, "limit_bytes": limit}),
            ),
            StoreError::RequestTooLarge { size, limit } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
                    .with_details(json!({"size_bytes": size, "limit_bytes": limit}))
            }
            StoreError::InvalidExpectedVersion(_) | StoreError::PartitionOutOfRange { .. } => {
                Self::bad_parameter(message)
            }
            StoreError::WrongExpectedVersion {
                entity_id,
                expected,
                current,
            } => Self::new(StatusCode::CONFLICT, "conflict", message).with_details(json!({
                "entity_id": entity_id,
                "expected_version": expected.to_string(),
                "current_version": current,
            })),
            StoreError::DuplicateEventId {
                entity_id,
                event_id,
            } => Self::new(StatusCode::CONFLICT, "duplicate_event_id", message)
                .with_details(json!({"entity_id": entity_id, "event_id": event_id})),
            StoreError::Closed | StoreError::WalFailed(_) | StoreError::Locked(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            StoreError::Io { .. }
            | StoreError::Storage { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Config(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_error", message)
            }
            StoreError::Internal(_) => Self::internal(message),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        let message = err.to_string();
        match err {
            QueryError::Syntax(_) => Self::new(StatusCode::BAD_REQUEST, "syntax_error", message),
            QueryError::ReadOnly(_) => Self::new(StatusCode::BAD_REQUEST, "read_only", message),
            QueryError::Plan(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_query", message),
            QueryError::MemoryLimit { limit_bytes, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "memory_limit", message)
                    .with_details(json!({"limit_bytes": limit_bytes}))
            }
            QueryError::Timeout(limit) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "timeout", message)
                    .with_details(json!({"limit_ms": limit.as_millis() as u64}))
            }
            QueryError::Store(e) => Self::from(e),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(err: PipelineError) -> Self {
        let message = err.to_string();
        match err {
            PipelineError::Invalid(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_pipeline", message)
            }
            PipelineError::Exists { kind, .. } => {
                let code = match kind {
                    allsource_operators::Kind::Pipeline => "pipeline_exists",
                    allsource_operators::Kind::Projection => "projection_exists",
                };
                Self::new(StatusCode::CONFLICT, code, message)
            }
            PipelineError::NotFound { .. } => Self::not_found(message),
            PipelineError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            PipelineError::Query(e) => Self::from(e),
            PipelineError::Storage(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                message,
            ),
            PipelineError::Execution(_) | PipelineError::Arrow(_) | PipelineError::Internal(_) => {
                Self::internal(message)
            }
        }
    }
}
