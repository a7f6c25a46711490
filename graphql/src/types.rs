//! The schema's object and input types.

use allsource_engine::RecordedEvent;
use async_graphql::{Enum, InputObject, Json, Object, SimpleObject};
use serde_json::Value;

use crate::scalars::{Cursor, DateTime};

/// An event as the log holds it.
pub struct Event(pub RecordedEvent);

#[Object]
impl Event {
    /// The event's id (a UUID v7 unless the client gave one).
    async fn event_id(&self) -> String {
        self.0.event_id.to_string()
    }

    /// The stream.
    async fn entity_id(&self) -> &str {
        &self.0.entity_id
    }

    /// The type, e.g. `order.placed`.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// Version in the stream, gapless from 1.
    async fn version(&self) -> u64 {
        self.0.version
    }

    /// Store-wide position in commit order; resume a subscription after it.
    async fn position(&self) -> u64 {
        self.0.position
    }

    /// The partition holding the stream.
    async fn partition(&self) -> u16 {
        self.0.partition
    }

    /// Offset in the partition.
    async fn offset(&self) -> u64 {
        self.0.offset
    }

    /// Event time.
    async fn timestamp(&self) -> DateTime {
        DateTime(self.0.timestamp_micros)
    }

    /// When the store accepted the event.
    async fn ingested_at(&self) -> DateTime {
        DateTime(self.0.ingested_at_micros)
    }

    /// The body.
    async fn payload(&self) -> Json<Value> {
        Json(json_value(&self.0.payload))
    }

    /// The metadata, if any.
    async fn metadata(&self) -> Option<Json<Value>> {
        self.0.metadata.as_deref().map(|m| Json(json_value(m)))
    }

    /// One value of the payload by a dotted path (`customer.id`, `items.0.sku`);
    /// null when the path leads nowhere.
    async fn field(&self, path: String) -> Option<Json<Value>> {
        let payload = json_value(&self.0.payload);
        let mut at = &payload;
        for step in path.split('.') {
            at = match at {
                Value::Object(entries) => entries.get(step)?,
                Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(Json(at.clone()))
    }
}

/// JSON text from the log as a value (the log only holds valid JSON).
fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// One event of a page and its cursor.
#[derive(SimpleObject)]
pub struct EventEdge {
    /// Pass as `after` to get the events that follow this one.
    pub cursor: String,
    /// The event.
    pub node: Event,
}

/// Where a page sits in the whole result.
#[derive(SimpleObject, Default)]
pub struct PageInfo {
    /// More events follow this page.
    pub has_next_page: bool,
    /// The page was asked for after a cursor.
    pub has_previous_page: bool,
    /// The first edge's cursor.
    pub start_cursor: Option<String>,
    /// The last edge's cursor.
    pub end_cursor: Option<String>,
}

/// A page of events (a Relay connection).
#[derive(SimpleObject)]
pub struct EventConnection {
    /// The events of the page.
    pub edges: Vec<EventEdge>,
    /// Where the page sits.
    pub page_info: PageInfo,
}

impl EventConnection {
    /// A page from up to `first + 1` events (the extra one only says more follow),
    /// each given its cursor by `cursor`.
    pub fn page(
        mut events: Vec<RecordedEvent>,
        first: usize,
        after_given: bool,
        cursor: impl Fn(&RecordedEvent) -> Cursor,
    ) -> Self {
        let has_next_page = events.len() > first;
        events.truncate(first);
        let edges: Vec<EventEdge> = events
            .into_iter()
            .map(|event| EventEdge {
                cursor: cursor(&event).encode(),
                node: Event(event),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page,
            has_previous_page: after_given,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        EventConnection { edges, page_info }
    }
}

/// The order of `events`.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum EventOrderBy {
    /// Log order, oldest first.
    #[default]
    PositionAsc,
    /// Log order, newest first.
    PositionDesc,
    /// Event time, earliest first.
    TimestampAsc,
    /// Event time, latest first.
    TimestampDesc,
}

/// A time range: `gte` inclusive, `lt` exclusive.
#[derive(InputObject, Debug, Default)]
pub struct TimeRange {
    /// At or after.
    pub gte: Option<DateTime>,
    /// Before.
    pub lt: Option<DateTime>,
}

/// Which events `events` returns; every field left out matches everything.
#[derive(InputObject, Debug, Default)]
pub struct EventFilter {
    /// Only this type.
    pub event_type: Option<String>,
    /// Only this stream.
    pub entity_id: Option<String>,
    /// Only event times in this range.
    pub timestamp: Option<TimeRange>,
}

/// Which events a subscription carries; every field left out matches everything.
#[derive(InputObject, Debug, Default)]
pub struct LiveFilter {
    /// Only this type.
    pub event_type: Option<String>,
    /// Only these types.
    pub event_types: Option<Vec<String>>,
    /// Only this stream.
    pub entity_id: Option<String>,
}

/// An event to append.
#[derive(InputObject, Debug)]
pub struct EventInput {
    /// The type, e.g. `order.placed`.
    pub event_type: String,
    /// The body: any JSON value.
    pub payload: Json<Value>,
    /// Correlation ids, causation, user agent...
    pub metadata: Option<Json<Value>>,
    /// Idempotency key: a retry with the same ids appends nothing and returns the
    /// original events. A UUID v7 is generated when left out.
    pub event_id: Option<String>,
    /// Event time; the time of the append when left out.
    pub timestamp: Option<DateTime>,
}

/// A stream's summary.
#[derive(SimpleObject, Debug)]
pub struct Stream {
    /// The stream.
    pub entity_id: String,
    /// Its current version.
    pub version: u64,
    /// Its earliest event time.
    pub first_timestamp: Option<DateTime>,
    /// Its latest event time.
    pub last_timestamp: Option<DateTime>,
    /// Its events.
    pub event_count: u64,
}

/// An event type and how many events have it.
#[derive(SimpleObject, Debug)]
pub struct EventTypeCount {
    /// The type.
    pub event_type: String,
    /// Events of it.
    pub count: u64,
}

/// The store's figures.
#[derive(SimpleObject, Debug)]
pub struct Stats {
    /// Events accepted.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Partitions.
    pub partitions: u16,
    /// First position not yet visible: every event below it can be read.
    pub visible_position: u64,
    /// The durability policy: `always`, `interval` or `never`.
    pub durability: String,
    /// Parquet files holding tiered events.
    pub parquet_files: u64,
}

/// The result of an EventQL query.
#[derive(SimpleObject, Debug)]
pub struct EventqlResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One JSON object per row, keyed by column name.
    pub rows: Vec<Json<Value>>,
    /// Rows returned.
    pub row_count: u64,
}
