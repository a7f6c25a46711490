//! Projections: totals per key, kept up to date as events arrive and read one key at a
//! time.
//!
//! ```sql
//! CREATE PROJECTION user_statistics AS
//!   SELECT entity_id, COUNT(*) AS events, SUM(payload->>'amount') AS total
//!   FROM events GROUP BY entity_id
//! ```
//!
//! A projection is a pipeline whose query groups by one column without windows and
//! returns that column: its key. Every event counts (none is late), its table holds
//! one row per key, and `GET /api/v1/projections/{name}/{key}` (or GraphQL
//! `projection(name, entityId)`) reads one key's row without scanning the table.
//! Two are built in, installed by name (`CREATE PROJECTION entity_snapshot`):
//!
//! - `entity_snapshot`: per entity, its state (the JSON merge of its payloads in
//!   version order, as `entity_state` computes it), its version and its newest event
//!   time;
//! - `event_counter`: per event type, how many events and the newest event time.

use allsource_sql::json_merge::JSON_TEXT;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, SchemaRef};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;

/// The built-in projections, by name, with their queries.
pub const BUILT_IN: [(&str, &str); 2] = [
    (
        "entity_snapshot",
        "SELECT entity_id, json_merge_agg(payload) AS state, MAX(version) AS version, \
         MAX(timestamp) AS last_event_at FROM events GROUP BY entity_id",
    ),
    (
        "event_counter",
        "SELECT event_type, COUNT(*) AS event_count, MAX(timestamp) AS last_event_at \
         FROM events GROUP BY event_type",
    ),
];

/// The query of the built-in projection `name`.
pub fn built_in(name: &str) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
}

/// Check that `pipeline` can be a projection: totals grouped by one column that its
/// results return.
pub fn check(pipeline: &Pipeline) -> Result<()> {
    if pipeline.key_column().is_some() {
        return Ok(());
    }
    Err(Error::Invalid(
        "a projection groups by one column and returns it (SELECT entity_id, … FROM events \
         GROUP BY entity_id), with no window function: windows belong in a pipeline"
            .into(),
    ))
}

/// Whether the field holds JSON text (the output of `json_merge_agg`).
fn is_json(field: &Field) -> bool {
    let (key, value) = JSON_TEXT;
    field.data_type() == &DataType::Utf8 && field.metadata().get(key).is_some_and(|v| v == value)
}

/// Each row of `batches` (of `schema`) as a JSON object: column names to values, a
/// projection's state as JSON rather than its text.
pub fn rows_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let mut writer = arrow::json::writer::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    let mut rows: Vec<Map<String, Value>> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("rendering rows as JSON: {e}")))?
    };
    // The JSON text of merged payloads reads back as JSON.
    let texts: Vec<(usize, &str)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| is_json(f))
        .map(|(i, f)| (i, f.name().as_str()))
        .collect();
    if texts.is_empty() {
        return Ok(rows);
    }
    let mut at = 0;
    for batch in batches {
        for (index, name) in &texts {
            let column = batch.column(*index).as_string::<i32>();
            for (row, text) in rows[at..at + batch.num_rows()]
                .iter_mut()
                .zip(column.iter())
            {
                if let Some(text) = text
                    && let Ok(value) = serde_json::from_str::<Value>(text)
                {
                    row.insert((*name).to_string(), value);
                }
            }
        }
        at += batch.num_rows();
    }
    Ok(rows)
}
