//! Events by entity, type and event time, in log order, a page at a time: the
//! search behind the REST API's `GET /events/query`, planned with DataFusion's
//! expression API (no SQL text, so no quoting of user input).

use allsource_engine::{RecordedEvent, event_at};
use datafusion::logical_expr::{col, lit};
use datafusion::scalar::ScalarValue;

use crate::{EventQl, QueryError, as_of};

/// The order events are found in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventOrder {
    /// Log order, oldest first.
    #[default]
    PositionAsc,
    /// Log order, newest first.
    PositionDesc,
    /// Event time, earliest first (ties in log order).
    TimestampAsc,
    /// Event time, latest first (ties newest first).
    TimestampDesc,
}

/// Where the previous page ended: its last event's position, and for the event-time
/// orders its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    /// The last event's position.
    pub position: u64,
    /// The last event's event time (microseconds); used by the event-time orders.
    pub timestamp_micros: i64,
}

/// Which events to find. Every field left `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this stream.
    pub entity_id: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
    /// Event time at or after this (microseconds since the Unix epoch).
    pub since_micros: Option<i64>,
    /// Event time before this.
    pub until_micros: Option<i64>,
    /// The log as it was at this ingestion time (time travel).
    pub as_of_micros: Option<i64>,
    /// Only events after this position (the cursor of the previous page) in
    /// [`EventOrder::PositionAsc`]; see [`EventFilter::after`] for the other orders.
    pub after_position: Option<u64>,
    /// Only events that come after this one in `order` (the previous page's end).
    pub after: Option<After>,
    /// The order, log order by default.
    pub order: EventOrder,
    /// Most events returned.
    pub limit: usize,
}

impl EventQl {
    /// The events of `tenant` matching `filter`, in `filter.order`, at most
    /// `filter.limit`, under the per-query limits.
    pub async fn find_events(
        &self,
        tenant: &str,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, QueryError> {
        let limit = self.limits.memory_bytes;
        let df_err = |e| QueryError::from_datafusion(e, limit);
        let cutoffs: Vec<i64> = filter.as_of_micros.into_iter().collect();
        let ctx = self.context(tenant, &cutoffs).await.map_err(df_err)?;
        let table = match filter.as_of_micros {
            Some(_) => format!("{}0", as_of::AS_OF_TABLE_PREFIX),
            None => "events".to_string(),
        };
        let micros = |t: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(t),
                Some("UTC".into()),
            ))
        };
        let mut predicates = Vec::new();
        if let Some(entity_id) = &filter.entity_id {
            predicates.push(col("entity_id").eq(lit(entity_id.as_str())));
        }
        if let Some(event_type) = &filter.event_type {
            predicates.push(col("event_type").eq(lit(event_type.as_str())));
        }
        if let Some(since) = filter.since_micros {
            predicates.push(col("timestamp").gt_eq(micros(since)));
        }
        if let Some(until) = filter.until_micros {
            predicates.push(col("timestamp").lt(micros(until)));
        }
        if let Some(after) = filter.after_position {
            predicates.push(col("position").gt(lit(after)));
        }
        let ascending = matches!(
            filter.order,
            EventOrder::PositionAsc | EventOrder::TimestampAsc
        );
        let by_time = matches!(
            filter.order,
            EventOrder::TimestampAsc | EventOrder::TimestampDesc
        );
        if let Some(after) = filter.after {
            let past = |column: &str, value| match ascending {
                true => col(column).gt(value),
                false => col(column).lt(value),
            };
            let position = lit(after.position);
            predicates.push(match by_time {
                false => past("position", position),
                true => past("timestamp", micros(after.timestamp_micros)).or(col("timestamp")
                    .eq(micros(after.timestamp_micros))
                    .and(past("position", position))),
            });
        }
        let mut frame = ctx.table(table.as_str()).await.map_err(df_err)?;
        for predicate in predicates {
            frame = frame.filter(predicate).map_err(df_err)?;
        }
        let mut order = Vec::new();
        if by_time {
            order.push(col("timestamp").sort(ascending, false));
        }
        order.push(col("position").sort(ascending, false));
        let frame = frame
            .sort(order)
            .and_then(|f| f.limit(0, Some(filter.limit)))
            .map_err(df_err)?;
        let batches = self.collect(frame).await?;
        Ok(batches
            .iter()
            .flat_map(|batch| (0..batch.num_rows()).map(move |row| event_at(batch, row)))
            .collect())
    }
}
