//! What the source operators ([`crate::dedupe`], [`crate::throttle`]) share: the key
//! they read off each source event, and the one Arrow layout their state is
//! checkpointed in.
//!
//! Both act on the pipeline's source events after the watermark has set late events
//! aside and before the query runs, in log order: they decide per event whether it
//! goes on. A key names a column of `events` (`entity_id`, `event_type`, `event_id`,
//! `tenant`) or else a payload field (`customer.tier` for a nested one). An event
//! without the key (a payload without the field, or a `null`) always goes on.

use std::sync::Arc;

use allsource_engine::event_schema;
use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use crate::error::{Error, Result};

/// The columns of `events` a key may name; anything else is a payload field.
const KEY_COLUMNS: [&str; 4] = ["entity_id", "event_type", "event_id", "tenant"];

/// Where a source operator reads its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKey {
    /// A text column of `events`.
    Column(String),
    /// A payload field, by path.
    Payload(Vec<String>),
}

impl SourceKey {
    /// The key `name` names: a column of `events`, else a payload path.
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.trim();
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(Error::Invalid(format!(
                "a key is a column of events ({}) or a payload field such as customer.tier, \
                 not {name:?}",
                KEY_COLUMNS.join(", ")
            )));
        }
        if KEY_COLUMNS.contains(&name) {
            return Ok(Self::Column(name.to_string()));
        }
        let path = name.strip_prefix("payload.").unwrap_or(name);
        Ok(Self::Payload(path.split('.').map(str::to_string).collect()))
    }

    /// Each event's key, `None` where it has none.
    pub fn values(&self, events: &RecordBatch) -> Result<Vec<Option<String>>> {
        match self {
            Self::Column(name) => {
                let column = events.column_by_name(name).ok_or_else(|| {
                    Error::Internal(format!("the source events have no column {name}"))
                })?;
                let texts = column.as_string::<i32>();
                Ok(texts.iter().map(|t| t.map(str::to_string)).collect())
            }
            Self::Payload(path) => {
                let payloads = events
                    .column_by_name("payload")
                    .ok_or_else(|| Error::Internal("the source events have no payload".into()))?
                    .as_string::<i32>();
                Ok(payloads
                    .iter()
                    .map(|text| {
                        let value: Value = serde_json::from_str(text?).ok()?;
                        let found = path.iter().try_fold(&value, |v, step| v.get(step))?;
                        match found {
                            Value::Null => None,
                            Value::String(s) => Some(s.clone()),
                            other => Some(other.to_string()),
                        }
                    })
                    .collect())
            }
        }
    }
}

/// A source operator: decides per event whether it goes on, and forgets what the
/// watermark has made useless.
pub trait SourceOperator {
    /// Which of `events` (times in `times`) go on.
    fn admit(&mut self, events: &RecordBatch, times: &[i64]) -> Result<BooleanArray>;

    /// Forget what no on-time event can need once the watermark is at `watermark`.
    fn forget(&mut self, watermark: i64);
}

/// The events of `events` that `operator` lets through, by their times in
/// `time_column`, and how many it dropped; then what `watermark` made useless is
/// forgotten.
pub fn pass(
    operator: &mut dyn SourceOperator,
    events: &RecordBatch,
    time_column: &str,
    watermark: Option<i64>,
) -> Result<(RecordBatch, u64)> {
    let pass = operator.admit(events, &times(events, time_column)?)?;
    let passed = arrow::compute::filter_record_batch(events, &pass)?;
    if let Some(w) = watermark {
        operator.forget(w);
    }
    Ok((passed, pass.false_count() as u64))
}

/// Each event's time in `column` (microseconds).
pub fn times(events: &RecordBatch, column: &str) -> Result<Vec<i64>> {
    let index = event_schema()
        .index_of(column)
        .map_err(|_| Error::Internal(format!("no time column {column}")))?;
    let times = events
        .column(index)
        .as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>()
        .ok_or_else(|| Error::Internal(format!("{column} is not a time")))?;
    Ok(times.values().to_vec())
}

/// The checkpointed state of the source operators: one row per remembered key, with
/// the operator it belongs to, a time (dedupe: when the key was let through;
/// throttle: its interval's number) and a count (throttle).
pub fn state_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("operator", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("time", DataType::Int64, false),
        Field::new("count", DataType::UInt64, false),
    ]))
}

/// Rows of [`state_schema`] for `operator`.
pub fn state_rows(operator: &str, rows: Vec<(String, i64, u64)>) -> Result<RecordBatch> {
    let operators: ArrayRef = Arc::new(StringArray::from(vec![operator; rows.len()]));
    let keys: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0)));
    let times: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
    let counts: ArrayRef = Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2)));
    Ok(RecordBatch::try_new(
        state_schema(),
        vec![operators, keys, times, counts],
    )?)
}

/// The rows of `operator` in `state` (of [`state_schema`]).
pub fn rows_of(state: &RecordBatch, operator: &str) -> Result<Vec<(String, i64, u64)>> {
    if !crate::groups::same_columns(&state.schema(), &state_schema(), true) {
        return Err(Error::Invalid(
            "a checkpoint's source operator state has other columns".into(),
        ));
    }
    let operators = state.column(0).as_string::<i32>();
    let keys = state.column(1).as_string::<i32>();
    let times = state
        .column(2)
        .as_primitive::<arrow::datatypes::Int64Type>();
    let counts = state
        .column(3)
        .as_primitive::<arrow::datatypes::UInt64Type>();
    Ok((0..state.num_rows())
        .filter(|&i| operators.value(i) == operator)
        .map(|i| (keys.value(i).to_string(), times.value(i), counts.value(i)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_columns_or_payload_fields() {
        assert_eq!(
            SourceKey::parse("entity_id").ok(),
            Some(SourceKey::Column("entity_id".into()))
        );
        assert_eq!(
            SourceKey::parse("payload.order.id").ok(),
            Some(SourceKey::Payload(vec!["order".into(), "id".into()]))
        );
        assert_eq!(
            SourceKey::parse("order_id").ok(),
            Some(SourceKey::Payload(vec!["order_id".into()]))
        );
        assert!(SourceKey::parse("a..b").is_err());
        assert!(SourceKey::parse(" ").is_err());
    }
}
