//! The engine's error type: every variant says who is at fault.

use std::path::PathBuf;

use crate::event::ExpectedVersion;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the event log.
///
/// Variants fall in three groups: the caller's fault (bad input, a conflict, something
/// not found), the environment's (I/O, corruption on disk, a lock held elsewhere), and
/// ours ([`Error::Internal`]: a bug). [`Error::kind`] tells which.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An event in the request is malformed (empty name, payload not JSON, ...).
    #[error("invalid event #{index}: {reason}")]
    InvalidEvent {
        /// Position of the event in the request, counted from 0 across all streams.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The request as a whole is malformed (no events, empty tenant or entity id, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An event's payload or metadata is larger than the configured limit.
    #[error("event #{index}: {field} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Position of the event in the request.
        index: usize,
        /// `payload` or `metadata`.
        field: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request's total size is over the configured limit.
    #[error("request is {size} bytes, over the limit of {limit} bytes")]
    RequestTooLarge {
        /// Its encoded size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// An `expected_version` could not be parsed.
    #[error(
        "unknown expected_version {0:?}: use \"any\", \"no_stream\", \"stream_exists\" or a version number"
    )]
    InvalidExpectedVersion(String),
    /// Optimistic concurrency check failed.
    #[error("wrong expected version for stream {entity_id:?}: expected {expected}, current {}", current.map_or_else(|| "none (no stream)".to_string(), |v| v.to_string()))]
    WrongExpectedVersion {
        /// The stream.
        entity_id: String,
        /// What the request expected.
        expected: ExpectedVersion,
        /// The stream's current version, `None` when the stream does not exist.
        current: Option<u64>,
    },
    /// Some, but not all, of the request's event ids are already in their streams: it is
    /// neither a new request nor a retry of an earlier one.
    #[error(
        "event id {event_id:?} is already in stream {entity_id:?}, but the request is not a retry of the request that wrote it"
    )]
    DuplicateEventId {
        /// The stream.
        entity_id: String,
        /// The event id already present.
        event_id: String,
    },
    /// A partition number outside `0..partition_count`.
    #[error("partition {partition} does not exist (the store has {count} partitions)")]
    PartitionOutOfRange {
        /// The partition asked for.
        partition: u16,
        /// How many the store has.
        count: u16,
    },
    /// The configuration is invalid or does not match the store on disk.
    #[error("configuration: {0}")]
    Config(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and to which file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Data on disk is damaged where it cannot be a torn final write.
    #[error("corrupt data in {} at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// Reading or writing the tiered tables (object storage, Parquet) failed.
    #[error("{context}: {reason}")]
    Storage {
        /// What was being done, and to which object.
        context: String,
        /// The underlying error.
        reason: String,
    },
    /// Another process holds the store's lock.
    #[error("the store at {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The WAL writer stopped after a write or fsync error; the store must be reopened.
    /// Nothing acknowledged is lost, but no further appends are accepted.
    #[error("the write-ahead log failed and accepts no more writes: {0}")]
    WalFailed(String),
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// A bug in AllSource.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Who is at fault for an [`Error`]; adapters map this to status codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed.
    InvalidInput,
    /// The request is well formed but conflicts with the store's state.
    Conflict,
    /// Something asked for does not exist.
    NotFound,
    /// A limit was exceeded.
    TooLarge,
    /// The environment failed: I/O, corruption, a lock, a stopped writer.
    Environment,
    /// A bug.
    Internal,
}

impl Error {
    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidEvent { .. }
            | Error::InvalidRequest(_)
            | Error::InvalidExpectedVersion(_)
            | Error::Config(_) => ErrorKind::InvalidInput,
            Error::TooLarge { .. } | Error::RequestTooLarge { .. } => ErrorKind::TooLarge,
            Error::WrongExpectedVersion { .. } | Error::DuplicateEventId { .. } => {
                ErrorKind::Conflict
            }
            Error::PartitionOutOfRange { .. } => ErrorKind::NotFound,
            Error::Io { .. }
            | Error::Storage { .. }
            | Error::Corrupt { .. }
            | Error::Locked(_)
            | Error::WalFailed(_)
            | Error::Closed => ErrorKind::Environment,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn storage(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Storage {
            context: context.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach a context to an I/O result.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}
