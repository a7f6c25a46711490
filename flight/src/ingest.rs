//! Arrow batches in, events out: the DoPut schema.
//!
//! | column | type | |
//! |---|---|---|
//! | `entity_id` | string | required |
//! | `event_type` | string | required |
//! | `payload` | string (JSON text) | required |
//! | `event_id` | string | optional; a UUID v7 is generated when absent or null |
//! | `timestamp` | timestamp (any unit) | optional; ingest time when absent or null |
//! | `metadata` | string (JSON text) | optional |
//! | `expected_version` | integer or string (`any`, `no_stream`, `stream_exists`, `n`) | optional |
//!
//! Strings may be `utf8`, `large_utf8` or `utf8_view`. A row's `expected_version` is
//! checked against its stream just before that row, so it may follow rows of the
//! same stream earlier in the batch. One batch is one atomic append.

use std::str::FromStr;

use allsource_engine::{AppendSource, EventView, ExpectedVersion, PartView};
use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};

use crate::error::FlightError;

/// The columns a batch may have, in the order the table shows them.
pub const COLUMNS: [&str; 7] = [
    "entity_id",
    "event_type",
    "payload",
    "event_id",
    "timestamp",
    "metadata",
    "expected_version",
];

/// The columns a batch must have.
const REQUIRED: [&str; 3] = ["entity_id", "event_type", "payload"];

/// One batch of a DoPut as an append request, read in place from its columns: the
/// store checks and encodes each row straight from the Arrow arrays (no owned strings
/// per row). Its parts are runs of consecutive rows of one stream; a row that names
/// an expected version starts a new part.
#[derive(Debug)]
pub struct EventBatch {
    tenant: String,
    entity_ids: StringArray,
    event_types: StringArray,
    payloads: StringArray,
    event_ids: Option<StringArray>,
    metadata: Option<StringArray>,
    timestamps: Option<PrimitiveArray<TimestampMicrosecondType>>,
    /// Each part: its first row, its number of rows, its condition.
    parts: Vec<(usize, usize, ExpectedVersion)>,
}

impl EventBatch {
    /// The batch's rows, in order.
    pub fn rows(&self) -> usize {
        self.entity_ids.len()
    }
}

impl AppendSource for EventBatch {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn part_count(&self) -> usize {
        self.parts.len()
    }

    fn part(&self, part: usize) -> PartView<'_> {
        let (first, len, expected_version) = self.parts[part];
        PartView {
            entity_id: self.entity_ids.value(first),
            expected_version,
            len,
        }
    }

    fn event(&self, part: usize, event: usize) -> EventView<'_> {
        let row = self.parts[part].0 + event;
        EventView {
            event_type: self.event_types.value(row),
            payload: self.payloads.value(row),
            metadata: optional(self.metadata.as_ref(), row),
            event_id: optional(self.event_ids.as_ref(), row),
            timestamp_micros: self
                .timestamps
                .as_ref()
                .and_then(|t| t.is_valid(row).then(|| t.value(row))),
        }
    }
}

/// The append request for one batch of `tenant` (see [`EventBatch`]). A batch with a
/// missing, unknown or mistyped column, or a null in a required one, is refused whole.
pub fn batch_events(tenant: &str, batch: &RecordBatch) -> Result<EventBatch, FlightError> {
    let schema = batch.schema();
    let unknown: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| !COLUMNS.contains(name))
        .collect();
    if !unknown.is_empty() {
        return Err(FlightError::invalid(format!(
            "unknown column(s) {}; an event batch has the columns {}",
            unknown.join(", "),
            COLUMNS.join(", ")
        )));
    }
    let column = |name: &str| schema.index_of(name).ok().map(|i| batch.column(i));
    let required = |name: &str| {
        column(name).ok_or_else(|| {
            FlightError::invalid(format!(
                "the batch has no `{name}` column (required: {})",
                REQUIRED.join(", ")
            ))
        })
    };
    let entity_ids = strings("entity_id", required("entity_id")?)?;
    let event_types = strings("event_type", required("event_type")?)?;
    let payloads = strings("payload", required("payload")?)?;
    let event_ids = column("event_id")
        .map(|c| strings("event_id", c))
        .transpose()?;
    let metadata = column("metadata")
        .map(|c| strings("metadata", c))
        .transpose()?;
    let timestamps = column("timestamp").map(micros).transpose()?;
    let expected = column("expected_version")
        .map(ExpectedColumn::new)
        .transpose()?;
    for (name, values) in [
        ("entity_id", &entity_ids),
        ("event_type", &event_types),
        ("payload", &payloads),
    ] {
        if let Some(row) = (0..values.len()).find(|row| values.is_null(*row)) {
            return Err(FlightError::invalid(format!("row {row}: `{name}` is null")));
        }
    }

    let mut parts: Vec<(usize, usize, ExpectedVersion)> = Vec::new();
    for row in 0..batch.num_rows() {
        let condition = expected.as_ref().map(|e| e.at(row)).transpose()?.flatten();
        match parts.last_mut() {
            Some((first, len, _))
                if condition.is_none() && entity_ids.value(*first) == entity_ids.value(row) =>
            {
                *len += 1;
            }
            _ => parts.push((row, 1, condition.unwrap_or_default())),
        }
    }
    Ok(EventBatch {
        tenant: tenant.to_string(),
        entity_ids,
        event_types,
        payloads,
        event_ids,
        metadata,
        timestamps,
        parts,
    })
}

fn optional(column: Option<&StringArray>, row: usize) -> Option<&str> {
    column.and_then(|c| c.is_valid(row).then(|| c.value(row)))
}

/// A string column as `utf8`.
fn strings(name: &str, column: &ArrayRef) -> Result<StringArray, FlightError> {
    match column.data_type() {
        DataType::Utf8 => Ok(column.as_string::<i32>().clone()),
        DataType::LargeUtf8 | DataType::Utf8View => cast(column, &DataType::Utf8)
            .map(|c| c.as_string::<i32>().clone())
            .map_err(|e| FlightError::invalid(format!("column `{name}`: {e}"))),
        other => Err(FlightError::invalid(format!(
            "column `{name}` must be a string column, not {other}"
        ))),
    }
}

/// A timestamp column as microseconds since the Unix epoch.
fn micros(column: &ArrayRef) -> Result<PrimitiveArray<TimestampMicrosecondType>, FlightError> {
    match column.data_type() {
        DataType::Timestamp(_, _) => {
            cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone())
                .map_err(|e| FlightError::invalid(format!("column `timestamp`: {e}")))
        }
        other => Err(FlightError::invalid(format!(
            "column `timestamp` must be a timestamp column, not {other}"
        ))),
    }
}

/// The `expected_version` column: numbers (exact versions) or words.
enum ExpectedColumn {
    Numbers(PrimitiveArray<Int64Type>),
    Words(StringArray),
}

impl ExpectedColumn {
    fn new(column: &ArrayRef) -> Result<Self, FlightError> {
        match column.data_type() {
            t if t.is_integer() => cast(column, &DataType::Int64)
                .map(|c| Self::Numbers(c.as_primitive::<Int64Type>().clone()))
                .map_err(|e| FlightError::invalid(format!("column `expected_version`: {e}"))),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                strings("expected_version", column).map(Self::Words)
            }
            other => Err(FlightError::invalid(format!(
                "column `expected_version` must hold integers or strings, not {other}"
            ))),
        }
    }

    /// The condition on `row`, `None` when it is null.
    fn at(&self, row: usize) -> Result<Option<ExpectedVersion>, FlightError> {
        match self {
            Self::Numbers(n) if n.is_valid(row) => u64::try_from(n.value(row))
                .map(|v| Some(ExpectedVersion::Exact(v)))
                .map_err(|_| {
                    FlightError::invalid(format!(
                        "row {row}: expected_version {} is negative",
                        n.value(row)
                    ))
                }),
            Self::Words(w) if w.is_valid(row) => ExpectedVersion::from_str(w.value(row))
                .map(Some)
                .map_err(|e| FlightError::invalid(format!("row {row}: {e}"))),
            _ => Ok(None),
        }
    }
}

/// What a plain DoPut answers for each batch, as JSON in `app_metadata`.
#[derive(Debug, serde::Serialize)]
pub struct BatchAck {
    /// Events appended.
    pub count: usize,
    /// Log position of the batch's first event.
    pub first_position: u64,
    /// Log position of its last event.
    pub last_position: u64,
}

impl BatchAck {
    /// The acknowledgement of an append's result (`None` for an empty result).
    pub fn of(result: &allsource_engine::AppendResult) -> Option<Self> {
        let first = result.events.iter().map(|e| e.position).min()?;
        let last = result.events.iter().map(|e| e.position).max()?;
        Some(Self {
            count: result.events.len(),
            first_position: first,
            last_position: last,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int64Array, LargeStringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn rows_become_parts_per_stream_run_and_condition() {
        let b = batch(vec![
            (
                "entity_id",
                text(&[Some("a"), Some("a"), Some("b"), Some("a"), Some("a")]),
            ),
            ("event_type", text(&[Some("t"); 5])),
            (
                "payload",
                Arc::new(LargeStringArray::from(vec![r#"{"n":1}"#; 5])),
            ),
            (
                "expected_version",
                Arc::new(Int64Array::from(vec![Some(0), None, None, None, Some(3)])),
            ),
            (
                "timestamp",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(5),
                    None,
                    None,
                    None,
                    None,
                ])),
            ),
        ]);
        let events = batch_events("default", &b).unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<(&str, ExpectedVersion, usize)> = (0..events.part_count())
            .map(|i| {
                let p = events.part(i);
                (p.entity_id, p.expected_version, p.len)
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                ("a", ExpectedVersion::Exact(0), 2),
                ("b", ExpectedVersion::Any, 1),
                ("a", ExpectedVersion::Any, 1),
                ("a", ExpectedVersion::Exact(3), 1),
            ]
        );
        assert_eq!(events.event(0, 0).timestamp_micros, Some(5000));
        assert_eq!(events.event(0, 1).timestamp_micros, None);
        assert_eq!(events.event(3, 0).payload, r#"{"n":1}"#);
        assert_eq!(events.rows(), 5);
    }

    #[test]
    fn malformed_batches_are_named_precisely() {
        let message = |b: RecordBatch| match batch_events("default", &b) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        let missing = message(batch(vec![
            ("entity_id", text(&[Some("a")])),
            ("payload", text(&[Some("{}")])),
        ]));
        assert!(missing.contains("no `event_type` column"), "{missing}");
        let wrong = message(batch(vec![
            ("entity_id", text(&[Some("a")])),
            ("event_type", text(&[Some("t")])),
            ("payload", Arc::new(Int64Array::from(vec![1]))),
        ]));
        assert!(
            wrong.contains("`payload` must be a string column"),
            "{wrong}"
        );
        let null = message(batch(vec![
            ("entity_id", text(&[Some("a"), None])),
            ("event_type", text(&[Some("t"), Some("t")])),
            ("payload", text(&[Some("{}"), Some("{}")])),
        ]));
        assert!(null.contains("row 1: `entity_id` is null"), "{null}");
        let unknown = message(batch(vec![
            ("entity", text(&[Some("a")])),
            ("event_type", text(&[Some("t")])),
            ("payload", text(&[Some("{}")])),
        ]));
        assert!(unknown.contains("unknown column(s) entity"), "{unknown}");
        let negative = message(batch(vec![
            ("entity_id", text(&[Some("a")])),
            ("event_type", text(&[Some("t")])),
            ("payload", text(&[Some("{}")])),
            ("expected_version", Arc::new(Int64Array::from(vec![-1]))),
        ]));
        assert!(negative.contains("negative"), "{negative}");
    }
}
