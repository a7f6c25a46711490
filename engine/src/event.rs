//! The event model: what a client appends, and what the log records.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event_id::EventId;

/// An event as a client proposes it, before the log assigns its place.
///
/// The payload (and the optional metadata) is JSON text; it is checked on append.
///
/// ```
/// # use allsource_engine::EventData;
/// let event = EventData::new("order.placed", r#"{"amount": 42}"#)
///     .with_metadata(r#"{"correlation_id": "c-1"}"#);
/// assert_eq!(event.event_type, "order.placed");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The event's type, e.g. `order.placed`. Must not be empty.
    pub event_type: String,
    /// The body, JSON text.
    pub payload: String,
    /// Optional JSON text: correlation ids, causation, user agent...
    pub metadata: Option<String>,
    /// Idempotency key; a UUID v7 is generated when `None`.
    pub event_id: Option<String>,
    /// Event time in microseconds since the Unix epoch; ingest time when `None`.
    pub timestamp_micros: Option<i64>,
}

impl EventData {
    /// An event of `event_type` with a JSON `payload`.
    pub fn new(event_type: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            payload: payload.into(),
            metadata: None,
            event_id: None,
            timestamp_micros: None,
        }
    }

    /// Attach JSON metadata.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// Give the event an id (the idempotency key for retries).
    pub fn with_event_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = Some(event_id.into());
        self
    }

    /// Give the event its own event time.
    pub fn with_timestamp_micros(mut self, micros: i64) -> Self {
        self.timestamp_micros = Some(micros);
        self
    }
}

/// The optimistic-concurrency condition of an append to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's current version must be exactly this (0 = no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `current` (`None` = no stream) satisfies the condition.
    pub fn is_satisfied_by(self, current: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(n) => current.unwrap_or(0) == n,
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = Error;

    /// Parses `any`, `no_stream`, `stream_exists` or a non-negative version number.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "any" => Ok(ExpectedVersion::Any),
            "no_stream" => Ok(ExpectedVersion::NoStream),
            "stream_exists" => Ok(ExpectedVersion::StreamExists),
            n => n
                .parse()
                .map(ExpectedVersion::Exact)
                .map_err(|_| Error::InvalidExpectedVersion(s.to_string())),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::StreamExists => f.write_str("stream_exists"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// Events for one stream within an [`AppendRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream (aggregate). Must not be empty.
    pub entity_id: String,
    /// Condition checked against the stream before these events.
    pub expected_version: ExpectedVersion,
    /// The events, in order. Must not be empty.
    pub events: Vec<EventData>,
}

/// One atomic append: every event in it is appended, or none is.
///
/// A request may touch several streams; they are checked and applied in order, so a
/// later part may expect the version an earlier part of the same request produces.
///
/// ```
/// # use allsource_engine::{AppendRequest, EventData, ExpectedVersion};
/// let request = AppendRequest::new("acme")
///     .stream("order-1", ExpectedVersion::NoStream, vec![EventData::new("order.placed", "{}")])
///     .stream("user-7", ExpectedVersion::Any, vec![EventData::new("user.ordered", "{}")]);
/// assert_eq!(request.event_count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// The owner; every read and write is scoped to one tenant. Must not be empty.
    pub tenant: String,
    /// The streams' parts of the request, applied in order.
    pub streams: Vec<StreamAppend>,
}

impl AppendRequest {
    /// An empty request for `tenant`.
    pub fn new(tenant: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            streams: Vec::new(),
        }
    }

    /// Add events for one stream.
    pub fn stream(
        mut self,
        entity_id: impl Into<String>,
        expected_version: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Self {
        self.streams.push(StreamAppend {
            entity_id: entity_id.into(),
            expected_version,
            events,
        });
        self
    }

    /// Total number of events.
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}

/// An append request as the log reads it, wherever its events are held.
///
/// [`AppendRequest`] is one. A caller that already holds events in columns (Arrow
/// Flight ingest) implements it over its arrays and appends with
/// [`EventStore::submit_source`](crate::EventStore::submit_source), so no event is
/// copied into owned strings on its way into the WAL record. Parts are one stream's
/// run of events each, applied in order, exactly as [`AppendRequest::streams`].
pub trait AppendSource {
    /// The owner; every read and write is scoped to one tenant.
    fn tenant(&self) -> &str;
    /// How many parts the request has.
    fn part_count(&self) -> usize;
    /// Part `part`: its stream, condition and number of events.
    fn part(&self, part: usize) -> PartView<'_>;
    /// Event `event` of part `part`.
    fn event(&self, part: usize, event: usize) -> EventView<'_>;
}

/// One part of an [`AppendSource`].
#[derive(Debug, Clone, Copy)]
pub struct PartView<'a> {
    /// The stream.
    pub entity_id: &'a str,
    /// Condition checked against the stream before these events.
    pub expected_version: ExpectedVersion,
    /// Number of events in the part.
    pub len: usize,
}

/// One event of an [`AppendSource`], as [`EventData`] holds it, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The event's type.
    pub event_type: &'a str,
    /// The body, JSON text.
    pub payload: &'a str,
    /// Optional JSON metadata.
    pub metadata: Option<&'a str>,
    /// Idempotency key; a UUID v7 is generated when `None`.
    pub event_id: Option<&'a str>,
    /// Event time in microseconds since the Unix epoch; ingest time when `None`.
    pub timestamp_micros: Option<i64>,
}

impl AppendSource for AppendRequest {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn part_count(&self) -> usize {
        self.streams.len()
    }

    fn part(&self, part: usize) -> PartView<'_> {
        let stream = &self.streams[part];
        PartView {
            entity_id: &stream.entity_id,
            expected_version: stream.expected_version,
            len: stream.events.len(),
        }
    }

    fn event(&self, part: usize, event: usize) -> EventView<'_> {
        let data = &self.streams[part].events[event];
        EventView {
            event_type: &data.event_type,
            payload: &data.payload,
            metadata: data.metadata.as_deref(),
            event_id: data.event_id.as_deref(),
            timestamp_micros: data.timestamp_micros,
        }
    }
}

/// Where one appended event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAck {
    /// The event's id (generated or the client's).
    pub event_id: EventId,
    /// The stream (shared by the acknowledgements of one stream's events).
    pub entity_id: Arc<str>,
    /// Its version in the stream (from 1).
    pub version: u64,
    /// Its partition.
    pub partition: u16,
    /// Its offset in the partition.
    pub offset: u64,
    /// Its store-wide log position.
    pub position: u64,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// One acknowledgement per event, in request order.
    pub events: Vec<EventAck>,
    /// `true` when the request was a retry of one already in the log: nothing new was
    /// appended and the original acknowledgements are returned.
    pub deduplicated: bool,
}

/// An event as the log holds it.
///
/// The tenant, stream and type are shared text: the events of one read share one copy
/// of each, so reading a stream allocates little more than its payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Owner.
    pub tenant: Arc<str>,
    /// Stream.
    pub entity_id: Arc<str>,
    /// Type, e.g. `order.placed`.
    pub event_type: Arc<str>,
    /// Version in the stream: gapless from 1.
    pub version: u64,
    /// Partition: stable hash of (tenant, entity_id) mod the partition count.
    pub partition: u16,
    /// Offset in the partition: gapless from 0.
    pub offset: u64,
    /// Store-wide position in commit order: gapless from 0.
    pub position: u64,
    /// Idempotency key.
    pub event_id: EventId,
    /// Event time, microseconds since the Unix epoch (UTC).
    pub timestamp_micros: i64,
    /// Processing time, microseconds since the Unix epoch (UTC).
    pub ingested_at_micros: i64,
    /// JSON text.
    pub payload: JsonText,
    /// JSON text, if any.
    pub metadata: Option<String>,
}

/// JSON text read from the log: a row of an Arrow string column that the events of
/// one read share, so reading an event does not copy its payload. It reads and
/// compares as its text (`&*payload` is a `&str`).
///
/// ```
/// # use allsource_engine::JsonText;
/// let payload = JsonText::from(r#"{"amount":42}"#);
/// assert_eq!(payload, r#"{"amount":42}"#);
/// assert_eq!(payload.len(), 13);
/// ```
#[derive(Clone)]
pub struct JsonText {
    column: Arc<StringArray>,
    row: usize,
}

impl JsonText {
    /// Row `row` of `column`, which must be non-null there.
    pub(crate) fn new(column: Arc<StringArray>, row: usize) -> Self {
        debug_assert!(row < column.len() && column.is_valid(row));
        Self { column, row }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.column.value(self.row)
    }
}

impl std::ops::Deref for JsonText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for JsonText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for JsonText {
    fn from(text: &str) -> Self {
        Self::new(Arc::new(StringArray::from_iter_values([text])), 0)
    }
}

impl From<String> for JsonText {
    fn from(text: String) -> Self {
        Self::from(text.as_str())
    }
}

impl From<JsonText> for String {
    fn from(text: JsonText) -> Self {
        text.as_str().to_owned()
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonText {}

impl PartialEq<str> for JsonText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for JsonText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

impl RecordedEvent {
    /// The acknowledgement describing where this event landed.
    pub fn ack(&self) -> EventAck {
        EventAck {
            event_id: self.event_id.clone(),
            entity_id: Arc::clone(&self.entity_id),
            version: self.version,
            partition: self.partition,
            offset: self.offset,
            position: self.position,
        }
    }

    /// Call `f` with the event as a borrowed row.
    pub(crate) fn with_row<R>(&self, f: impl FnOnce(&EventRow<'_>) -> R) -> R {
        self.event_id.with_text(|event_id| {
            f(&EventRow {
                tenant: &self.tenant,
                entity_id: &self.entity_id,
                event_type: &self.event_type,
                version: self.version,
                partition: self.partition,
                offset: self.offset,
                position: self.position,
                event_id,
                event_uuid: self.event_id.uuid_value(),
                timestamp_micros: self.timestamp_micros,
                ingested_at_micros: self.ingested_at_micros,
                payload: &self.payload,
                metadata: self.metadata.as_deref(),
            })
        })
    }
}

/// An event as the WAL codec and the Arrow buffer see it: the fields of a
/// [`RecordedEvent`], borrowing their text, so the append path allocates nothing per
/// event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventRow<'a> {
    pub tenant: &'a str,
    pub entity_id: &'a str,
    pub event_type: &'a str,
    pub version: u64,
    pub partition: u16,
    pub offset: u64,
    pub position: u64,
    pub event_id: &'a str,
    /// `event_id`'s value when it is a UUID in canonical form, if known (so the
    /// buffer keeps it without parsing the text).
    pub event_uuid: Option<u128>,
    pub timestamp_micros: i64,
    pub ingested_at_micros: i64,
    pub payload: &'a str,
    pub metadata: Option<&'a str>,
}

impl EventRow<'_> {
    /// An owned copy.
    #[cfg(test)]
    pub fn to_recorded(self) -> RecordedEvent {
        RecordedEvent {
            tenant: self.tenant.into(),
            entity_id: self.entity_id.into(),
            event_type: self.event_type.into(),
            version: self.version,
            partition: self.partition,
            offset: self.offset,
            position: self.position,
            event_id: EventId::from(self.event_id),
            timestamp_micros: self.timestamp_micros,
            ingested_at_micros: self.ingested_at_micros,
            payload: JsonText::from(self.payload),
            metadata: self.metadata.map(str::to_string),
        }
    }
}

/// Longest tenant, entity id, event type or event id accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Limits an append request is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_payload_bytes: usize,
    pub max_request_bytes: usize,
}

/// Check a request before anything is written. Returns its approximate encoded size.
pub(crate) fn validate_request<R: AppendSource + ?Sized>(
    request: &R,
    limits: Limits,
) -> Result<usize> {
    check_name("tenant", request.tenant()).map_err(Error::InvalidRequest)?;
    let parts = request.part_count();
    if parts == 0 || (0..parts).any(|i| request.part(i).len == 0) {
        return Err(Error::InvalidRequest(
            "a request needs at least one event for each stream".into(),
        ));
    }
    let mut size = 0usize;
    let mut index = 0usize;
    for i in 0..parts {
        let part = request.part(i);
        check_name("entity_id", part.entity_id).map_err(Error::InvalidRequest)?;
        for j in 0..part.len {
            size += validate_event(&request.event(i, j), index, limits)? + part.entity_id.len();
            index += 1;
        }
    }
    if size > limits.max_request_bytes {
        return Err(Error::RequestTooLarge {
            size,
            limit: limits.max_request_bytes,
        });
    }
    Ok(size)
}

fn validate_event(event: &EventView<'_>, index: usize, limits: Limits) -> Result<usize> {
    let invalid = |reason: String| Error::InvalidEvent { index, reason };
    check_name("event_type", event.event_type).map_err(invalid)?;
    if let Some(id) = event.event_id {
        check_name("event_id", id).map_err(invalid)?;
    }
    check_json("payload", event.payload, index, limits.max_payload_bytes)?;
    if let Some(metadata) = event.metadata {
        check_json("metadata", metadata, index, limits.max_payload_bytes)?;
    }
    Ok(64
        + event.event_type.len()
        + event.payload.len()
        + event.metadata.map_or(0, str::len)
        + event.event_id.map_or(36, str::len))
}

fn check_name(field: &str, value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{field} is {} bytes, over the limit of {MAX_NAME_BYTES}",
            value.len()
        ));
    }
    Ok(())
}

fn check_json(field: &'static str, text: &str, index: usize, limit: usize) -> Result<()> {
    if text.len() > limit {
        return Err(Error::TooLarge {
            index,
            field,
            size: text.len(),
            limit,
        });
    }
    crate::json::validate(text).map_err(|e| Error::InvalidEvent {
        index,
        reason: format!("{field} is not valid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_payload_bytes: 64,
        max_request_bytes: 1024,
    };

    fn one(event: EventData) -> AppendRequest {
        AppendRequest::new("t").stream("e", ExpectedVersion::Any, vec![event])
    }

    #[test]
    fn expected_version_parses_every_form_and_rejects_others() {
        assert_eq!(
            "any".parse::<ExpectedVersion>().ok(),
            Some(ExpectedVersion::Any)
        );
        assert_eq!(
            "no_stream".parse::<ExpectedVersion>().ok(),
            Some(ExpectedVersion::NoStream)
        );
        assert_eq!(
            "stream_exists".parse::<ExpectedVersion>().ok(),
            Some(ExpectedVersion::StreamExists)
        );
        assert_eq!(
            "7".parse::<ExpectedVersion>().ok(),
            Some(ExpectedVersion::Exact(7))
        );
        for bad in ["", "-1", "latest", "1.5"] {
            assert!(matches!(
                bad.parse::<ExpectedVersion>(),
                Err(Error::InvalidExpectedVersion(_))
            ));
        }
    }

    #[test]
    fn expected_version_semantics() {
        assert!(ExpectedVersion::NoStream.is_satisfied_by(None));
        assert!(!ExpectedVersion::NoStream.is_satisfied_by(Some(1)));
        assert!(ExpectedVersion::StreamExists.is_satisfied_by(Some(1)));
        assert!(!ExpectedVersion::StreamExists.is_satisfied_by(None));
        assert!(ExpectedVersion::Exact(0).is_satisfied_by(None));
        assert!(ExpectedVersion::Exact(3).is_satisfied_by(Some(3)));
        assert!(!ExpectedVersion::Exact(3).is_satisfied_by(Some(4)));
    }

    #[test]
    fn bad_events_are_rejected_with_typed_errors() {
        let cases = [
            (one(EventData::new("", "{}")), "empty event_type"),
            (one(EventData::new("t", "{not json")), "bad json"),
            (
                one(EventData::new("t", "{}").with_metadata("nope")),
                "bad metadata",
            ),
            (one(EventData::new("t", "{}").with_event_id("")), "empty id"),
        ];
        for (request, what) in cases {
            assert!(
                matches!(
                    validate_request(&request, LIMITS),
                    Err(Error::InvalidEvent { index: 0, .. })
                ),
                "{what}"
            );
        }
        let big = one(EventData::new("t", format!("\"{}\"", "x".repeat(100))));
        assert!(matches!(
            validate_request(&big, LIMITS),
            Err(Error::TooLarge {
                field: "payload",
                ..
            })
        ));
        let empty_entity = AppendRequest::new("t").stream(
            "",
            ExpectedVersion::Any,
            vec![EventData::new("t", "{}")],
        );
        assert!(matches!(
            validate_request(&empty_entity, LIMITS),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            validate_request(&AppendRequest::new("t"), LIMITS),
            Err(Error::InvalidRequest(_))
        ));
        let many = AppendRequest::new("t").stream(
            "e",
            ExpectedVersion::Any,
            vec![EventData::new("t", "\"0123456789012345678901234567890123456789\""); 20],
        );
        assert!(matches!(
            validate_request(&many, LIMITS),
            Err(Error::RequestTooLarge { .. })
        ));
    }
}
