//! `Watermark`: event-time progress of a pipeline's source, and which events are late.
//!
//! Input: the source's events in log order (every event of the pipeline's tenant,
//! before any filter of the pipeline). Output: a mask of the events that are on time,
//! and the watermark after them.
//!
//! - The watermark is the newest event time seen, less `allowed_lateness`: the
//!   bounded out-of-orderness of the source. It never goes back.
//! - An event stamped more than `max_future_skew` after its ingestion time does not
//!   move the watermark at all: one event stamped far in the future can neither
//!   push the watermark past every open window (which would make every later event
//!   late, skipping them) nor hold it (the stream goes on). The event itself is
//!   processed like any other, in its own window, emitted when event time gets
//!   there.
//! - An event is late when its time is before the watermark as it stood when the event
//!   was read. Events are taken one at a time in log order, so which events are late
//!   depends on the log alone, never on how the log was cut into batches.
//! - The log is one sequence (positions), so the watermark follows it as a whole: a
//!   partition without traffic has nothing to hold back.

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Event-time progress of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    allowed_lateness_micros: i64,
    max_future_skew_micros: i64,
    /// Microseconds since the epoch; `None` until the first event.
    current: Option<i64>,
}

impl Watermark {
    /// A watermark trailing the newest event time by `allowed_lateness_micros`.
    pub fn new(allowed_lateness_micros: i64, max_future_skew_micros: i64) -> Self {
        Self {
            allowed_lateness_micros,
            max_future_skew_micros,
            current: None,
        }
    }

    /// The watermark now: every window ending at or before it is complete.
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Take `events` (columns `time_column` and `ingested_at`), in order: which are
    /// on time (`true`), advancing the watermark past each.
    pub fn observe(&mut self, events: &RecordBatch, time_column: &str) -> Result<BooleanArray> {
        let times = timestamps(events, time_column)?;
        let ingested = timestamps(events, "ingested_at")?;
        let mut on_time = Vec::with_capacity(events.num_rows());
        for row in 0..events.num_rows() {
            if times.is_null(row) {
                return Err(Error::Invalid(format!("event without {time_column}")));
            }
            let time = times.value(row);
            on_time.push(self.current.is_none_or(|w| time >= w));
            let future = time
                > ingested
                    .value(row)
                    .saturating_add(self.max_future_skew_micros);
            if future {
                continue;
            }
            let candidate = time.saturating_sub(self.allowed_lateness_micros);
            self.current = Some(self.current.map_or(candidate, |w| w.max(candidate)));
        }
        Ok(BooleanArray::from(on_time))
    }
}

fn timestamps<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a TimestampMicrosecondArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| Error::Invalid(format!("the source has no timestamp column {name}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new("timestamp", ts.clone(), false),
            Field::new("ingested_at", ts, false),
        ]);
        let column = |f: fn(&(i64, i64)) -> i64| {
            Arc::new(
                TimestampMicrosecondArray::from(rows.iter().map(f).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ) as _
        };
        RecordBatch::try_new(Arc::new(schema), vec![column(|r| r.0), column(|r| r.1)])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn on_time(w: &mut Watermark, rows: &[(i64, i64)]) -> Vec<bool> {
        let mask = w
            .observe(&batch(rows), "timestamp")
            .unwrap_or_else(|e| panic!("{e}"));
        (0..mask.len()).map(|i| mask.value(i)).collect()
    }

    #[test]
    fn late_is_before_the_watermark_as_each_event_is_read() {
        let mut w = Watermark::new(5, 1_000);
        // 10 -> w 5; 6 on time (>= 5); 20 -> w 15; 14 late; 15 on time.
        let mask = on_time(&mut w, &[(10, 10), (6, 6), (20, 20), (14, 14), (15, 15)]);
        assert_eq!(mask, [true, true, true, false, true]);
        assert_eq!(w.current(), Some(15));
    }

    #[test]
    fn batches_do_not_change_what_is_late() {
        let rows = [
            (10, 10),
            (3, 3),
            (30, 30),
            (24, 24),
            (26, 26),
            (12, 12),
            (40, 40),
        ];
        let mut whole = Watermark::new(5, 1_000);
        let expected = on_time(&mut whole, &rows);
        for cut in 0..rows.len() {
            let mut split = Watermark::new(5, 1_000);
            let mut mask = on_time(&mut split, &rows[..cut]);
            mask.extend(on_time(&mut split, &rows[cut..]));
            assert_eq!(mask, expected, "cut at {cut}");
            assert_eq!(split, whole);
        }
    }

    #[test]
    fn an_event_beyond_the_future_skew_does_not_move_the_watermark() {
        let mut w = Watermark::new(0, 100);
        // Stamped a year ahead of its ingestion at 1000: on time, but not counted.
        let mask = on_time(
            &mut w,
            &[(1_000, 1_000), (31_536_000_000_000, 1_000), (1_050, 1_050)],
        );
        assert_eq!(mask, [true, true, true]);
        assert_eq!(w.current(), Some(1_050));
        // Within the skew (100 after ingestion), an event counts as stamped.
        let mask = on_time(&mut w, &[(1_160, 1_060), (1_100, 1_200), (1_200, 1_200)]);
        assert_eq!(mask, [true, false, true]);
        assert_eq!(w.current(), Some(1_200));
    }
}
