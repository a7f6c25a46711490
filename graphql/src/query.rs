//! `Query`: events a page at a time, one entity, streams, event types, the store's
//! figures and EventQL.

use allsource_engine::RecordedEvent;
use allsource_sql::{After, EventOrder};
use arrow::array::RecordBatch;
use async_graphql::{ComplexObject, Context, Json, Object, Result, SimpleObject};
use serde_json::Value;

use crate::scalars::{Cursor, DateTime};
use crate::types::{
    EventConnection, EventFilter, EventOrderBy, EventTypeCount, EventqlResult, Stats, Stream,
};
use crate::{Service, errors};

/// Events per page when `first` is left out.
const DEFAULT_PAGE: usize = 100;
/// Most events (or streams) one page returns.
const MAX_PAGE: usize = 1000;
/// Most rows `eventql` returns; larger results belong on Flight SQL or `/api/v1/query`.
const MAX_EVENTQL_ROWS: usize = 10_000;

/// The root of every query.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Events matching `filter`, in `orderBy`, `first` at a time after the cursor
    /// `after`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilter>,
        order_by: Option<EventOrderBy>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<EventConnection> {
        let service = ctx.data::<Service>()?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(errors::bad_input)?;
        let filter = filter.unwrap_or_default();
        let range = filter.timestamp.unwrap_or_default();
        let order = match order_by.unwrap_or_default() {
            EventOrderBy::PositionAsc => EventOrder::PositionAsc,
            EventOrderBy::PositionDesc => EventOrder::PositionDesc,
            EventOrderBy::TimestampAsc => EventOrder::TimestampAsc,
            EventOrderBy::TimestampDesc => EventOrder::TimestampDesc,
        };
        let by_time = matches!(order, EventOrder::TimestampAsc | EventOrder::TimestampDesc);
        let after_key = match (after, by_time) {
            (None, _) => None,
            (Some(Cursor::Position(position)), false) => Some(After {
                position,
                timestamp_micros: 0,
            }),
            (Some(Cursor::Time(timestamp_micros, position)), true) => Some(After {
                position,
                timestamp_micros,
            }),
            (Some(_), _) => {
                return Err(errors::bad_input(
                    "the cursor `after` comes from a page in another order",
                ));
            }
        };
        let search = allsource_sql::EventFilter {
            entity_id: filter.entity_id,
            event_type: filter.event_type,
            since_micros: range.gte.map(|t| t.0),
            until_micros: range.lt.map(|t| t.0),
            after: after_key,
            order,
            limit: first + 1,
            ..Default::default()
        };
        let events = service
            .eventql
            .find_events(&service.tenant, &search)
            .await
            .map_err(errors::query)?;
        Ok(EventConnection::page(
            events,
            first,
            after.is_some(),
            |e| match by_time {
                true => Cursor::Time(e.timestamp_micros, e.position),
                false => Cursor::Position(e.position),
            },
        ))
    }

    /// One stream; null when it has no events.
    async fn entity(&self, ctx: &Context<'_>, id: String) -> Result<Option<Entity>> {
        let service = ctx.data::<Service>()?;
        Ok(service
            .store
            .stream_version(&service.tenant, &id)
            .map(|version| Entity { id, version }))
    }

    /// Streams in entity id order, `first` at a time after the entity id `after`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn streams(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<Stream>> {
        let service = ctx.data::<Service>()?;
        let first = page_size(first)?;
        let after = after
            .map(|id| format!("WHERE entity_id > {}", sql_string(&id)))
            .unwrap_or_default();
        let sql = format!(
            "SELECT entity_id, version, first_timestamp, last_timestamp, event_count \
             FROM streams {after} ORDER BY entity_id LIMIT {first}"
        );
        let rows = rows(
            &service
                .eventql
                .query(&service.tenant, &sql)
                .await
                .map_err(errors::query)?,
        )?;
        Ok(rows
            .into_iter()
            .map(|row| Stream {
                entity_id: row["entity_id"].as_str().unwrap_or_default().to_string(),
                version: row["version"].as_u64().unwrap_or(0),
                first_timestamp: time_of(&row["first_timestamp"]),
                last_timestamp: time_of(&row["last_timestamp"]),
                event_count: row["event_count"].as_u64().unwrap_or(0),
            })
            .collect())
    }

    /// Every event type in the log and how many events have it.
    async fn event_types(&self, ctx: &Context<'_>) -> Result<Vec<EventTypeCount>> {
        let service = ctx.data::<Service>()?;
        let sql = "SELECT event_type, COUNT(*) AS events FROM events GROUP BY event_type ORDER BY event_type";
        let rows = rows(
            &service
                .eventql
                .query(&service.tenant, sql)
                .await
                .map_err(errors::query)?,
        )?;
        Ok(rows
            .into_iter()
            .map(|row| EventTypeCount {
                event_type: row["event_type"].as_str().unwrap_or_default().to_string(),
                count: row["events"].as_u64().unwrap_or(0),
            })
            .collect())
    }

    /// The store's figures.
    async fn stats(&self, ctx: &Context<'_>) -> Result<Stats> {
        let service = ctx.data::<Service>()?;
        let stats = service.store.stats();
        Ok(Stats {
            events: stats.events,
            streams: stats.streams,
            partitions: stats.partitions,
            visible_position: stats.visible_position,
            durability: stats.durability,
            parquet_files: stats.tier.files,
        })
    }

    /// The current row of `entityId` (the key: an entity id, or whatever the
    /// projection groups by) in the projection `name`, as a JSON object of its
    /// columns; null when it has no row for that key.
    async fn projection(
        &self,
        ctx: &Context<'_>,
        name: String,
        entity_id: String,
    ) -> Result<Option<Json<Value>>> {
        let service = ctx.data::<Service>()?;
        let (schema, row) = service
            .pipelines()?
            .lookup(&service.tenant, &name, &entity_id)
            .await
            .map_err(errors::pipeline)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut rows = allsource_operators::projection::rows_json(&schema, &[row])
            .map_err(errors::pipeline)?;
        Ok(rows.pop().map(|row| Json(Value::Object(row))))
    }

    /// An EventQL query (read-only SQL over `events`, `streams`, ...), its rows as
    /// JSON objects; at most 10,000 rows.
    async fn eventql(&self, ctx: &Context<'_>, query: String) -> Result<EventqlResult> {
        let service = ctx.data::<Service>()?;
        let mut stream = service
            .eventql
            .query_stream(&service.tenant, &query)
            .await
            .map_err(errors::query)?;
        let columns: Vec<String> = stream
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut batches = Vec::new();
        let mut row_count = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(errors::query)?;
            row_count += batch.num_rows();
            if row_count > MAX_EVENTQL_ROWS {
                return Err(errors::coded(
                    "LIMIT_EXCEEDED",
                    format!(
                        "the result has more than {MAX_EVENTQL_ROWS} rows: add a LIMIT, or read it over Flight SQL or /api/v1/query"
                    ),
                ));
            }
            batches.push(batch);
        }
        let rows = rows(&batches)?;
        Ok(EventqlResult {
            columns,
            row_count: rows.len() as u64,
            rows: rows
                .into_iter()
                .map(|row| Json(Value::Object(row)))
                .collect(),
        })
    }
}

/// A stream and what can be asked of it.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Entity {
    /// The entity id (the stream's name).
    pub id: String,
    /// The stream's current version.
    pub version: u64,
}

#[ComplexObject]
impl Entity {
    /// The JSON merge of the stream's payloads in version order, as of `asOf`
    /// (ingestion time; now when left out); null when it had no events then.
    async fn state(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime>,
    ) -> Result<Option<Json<Value>>> {
        let service = ctx.data::<Service>()?;
        let state = service
            .store
            .entity_state(&service.tenant, &self.id, as_of.map(|t| t.0))
            .await
            .map_err(errors::store)?;
        Ok(state.map(|s| Json(s.state)))
    }

    /// The stream's events in version order, `first` at a time after the cursor
    /// `after`.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<EventConnection> {
        let service = ctx.data::<Service>()?;
        let first = page_size(first)?;
        let from_version = match after.as_deref().map(Cursor::decode) {
            None => 1,
            Some(Ok(Cursor::Version(version))) => version + 1,
            Some(Ok(_)) => return Err(errors::bad_input("the cursor `after` is not an entity's")),
            Some(Err(message)) => return Err(errors::bad_input(message)),
        };
        let events: Vec<RecordedEvent> = service
            .store
            .read_stream(&service.tenant, &self.id, from_version, first + 1)
            .await
            .map_err(errors::store)?;
        Ok(EventConnection::page(events, first, after.is_some(), |e| {
            Cursor::Version(e.version)
        }))
    }
}

/// The page size `first` asks for, checked.
fn page_size(first: Option<i32>) -> Result<usize> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 1 && n as usize <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(errors::bad_input(format!(
            "first must be between 1 and {MAX_PAGE}, not {n}"
        ))),
    }
}

/// The complexity of a page: its children's, once per item it may return.
fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| n.clamp(1, MAX_PAGE as i32) as usize);
    items.saturating_mul(child_complexity.max(1))
}

/// A SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Rows of Arrow batches as JSON objects.
fn rows(batches: &[RecordBatch]) -> Result<Vec<serde_json::Map<String, Value>>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let batches: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&batches)
        .and_then(|()| writer.finish())
        .map_err(|e| errors::coded("INTERNAL_SERVER_ERROR", format!("rendering rows: {e}")))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| errors::coded("INTERNAL_SERVER_ERROR", format!("rendering rows: {e}")))
}

/// A timestamp rendered by the Arrow JSON writer as a `DateTime`.
fn time_of(value: &Value) -> Option<DateTime> {
    let text = value.as_str()?;
    crate::scalars::parse_time(text)
        .or_else(|_| crate::scalars::parse_time(&format!("{text}Z")))
        .ok()
        .map(DateTime)
}
