//! The window table functions in batch queries: `TUMBLE` and `HOP` put every event in
//! the windows its timestamp falls in, `SESSION` in its partition's session, and bad
//! arguments are plan errors.

use std::collections::BTreeMap;

use allsource::engine::{AppendRequest, Durability, EventData, ExpectedVersion};
use allsource::sql::{EventQl, QueryError};
use arrow::array::{Array, Int64Array, RecordBatch, TimestampMicrosecondArray};

use crate::util;

const SECOND: i64 = 1_000_000;

/// `(window_start, window_end) -> count` from a query selecting those three columns.
fn counts(batches: &[RecordBatch]) -> BTreeMap<(i64, i64), i64> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let column = |i: usize| -> &TimestampMicrosecondArray {
            batch
                .column(i)
                .as_any()
                .downcast_ref()
                .unwrap_or_else(|| panic!("column {i} is not a timestamp"))
        };
        let (start, end) = (column(0), column(1));
        let count: &Int64Array = batch
            .column(2)
            .as_any()
            .downcast_ref()
            .unwrap_or_else(|| panic!("count is not Int64"));
        for row in 0..batch.num_rows() {
            assert!(!start.is_null(row) && !end.is_null(row));
            out.insert((start.value(row), end.value(row)), count.value(row));
        }
    }
    out
}

#[tokio::test]
async fn tumble_and_hop_assign_every_event_to_its_windows() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    // Event times in seconds, some negative (before the epoch) and out of order.
    let times: Vec<i64> = vec![0, 1, 9, 10, 11, 25, 3, -1, -15, 59, 60, 61, 7];
    let events = times
        .iter()
        .map(|t| EventData::new("tick", "{}").with_timestamp_micros(t * SECOND))
        .collect();
    store
        .append(AppendRequest::new("acme").stream("clock", ExpectedVersion::Any, events))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eventql = EventQl::new(store.clone());

    let tumble = eventql
        .query(
            "acme",
            "SELECT window_start, window_end, COUNT(*) AS n \
             FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end ORDER BY window_start",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut expected = BTreeMap::new();
    for t in &times {
        let start = t.div_euclid(10) * 10;
        *expected
            .entry((start * SECOND, (start + 10) * SECOND))
            .or_insert(0) += 1;
    }
    assert_eq!(counts(&tumble), expected);

    let hop = eventql
        .query(
            "acme",
            "SELECT window_start, window_end, COUNT(*) AS n \
             FROM HOP(events, timestamp, INTERVAL '5' SECOND, INTERVAL '15' SECOND) \
             GROUP BY window_start, window_end",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut expected = BTreeMap::new();
    for t in &times {
        let latest = t.div_euclid(5) * 5;
        for back in 0..3 {
            let start = latest - back * 5;
            assert!(start <= *t && *t < start + 15);
            *expected
                .entry((start * SECOND, (start + 15) * SECOND))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(counts(&hop), expected);

    // Filters and other columns work through the view.
    let filtered = eventql
        .query(
            "acme",
            "SELECT window_start, window_end, COUNT(*) AS n \
             FROM TUMBLE(events, timestamp, INTERVAL '1' MINUTE) \
             WHERE entity_id = 'clock' AND timestamp >= TIMESTAMP '1970-01-01T00:00:00Z' \
             GROUP BY window_start, window_end",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = BTreeMap::from([((0, 60 * SECOND), 9), ((60 * SECOND, 120 * SECOND), 2)]);
    assert_eq!(counts(&filtered), expected);
}

#[tokio::test]
async fn bad_window_arguments_are_plan_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    let eventql = EventQl::new(store);
    for (sql, says) in [
        ("SELECT * FROM TUMBLE(events, timestamp)", "3 arguments"),
        (
            "SELECT * FROM TUMBLE(streams, timestamp, INTERVAL '1' HOUR)",
            "reads the table events",
        ),
        (
            "SELECT * FROM TUMBLE(events, nope, INTERVAL '1' HOUR)",
            "no column nope",
        ),
        (
            "SELECT * FROM TUMBLE(events, entity_id, INTERVAL '1' HOUR)",
            "not a timestamp",
        ),
        ("SELECT * FROM TUMBLE(events, timestamp, 5)", "interval"),
        (
            "SELECT * FROM TUMBLE(events, timestamp, INTERVAL '1' MONTH)",
            "interval",
        ),
        (
            "SELECT * FROM TUMBLE(events, timestamp, INTERVAL '-1' HOUR)",
            "positive",
        ),
        (
            "SELECT * FROM HOP(events, timestamp, INTERVAL '4' SECOND, INTERVAL '10' SECOND)",
            "multiple",
        ),
        (
            "SELECT * FROM HOP(events, timestamp, INTERVAL '1' MILLISECOND, INTERVAL '1' HOUR)",
            "at most",
        ),
        ("SELECT * FROM SESSION(events, timestamp)", "at least 3"),
        (
            "SELECT * FROM SESSION(events, timestamp, INTERVAL '1' MINUTE, nope)",
            "does not have",
        ),
        (
            "SELECT * FROM SESSION(events, timestamp, INTERVAL '1' MINUTE, 'x')",
            "partitions by columns",
        ),
        ("SELECT * FROM SESSION(events, timestamp, 10)", "interval"),
        ("SELECT * FROM generate_series(1, 3)", "table function"),
    ] {
        match eventql.query("acme", sql).await {
            Err(e @ (QueryError::Plan(_) | QueryError::ReadOnly(_))) => {
                assert!(e.to_string().contains(says), "{sql}: {e}")
            }
            other => panic!("{sql}: expected a plan error, got {other:?}"),
        }
    }
}

/// Sessions by brute force: per entity, times sorted, a new session where the step is
/// `gap` or more. `(entity, start, end) -> count`.
fn sessions(events: &[(&str, i64)], gap: i64) -> BTreeMap<(String, i64, i64), i64> {
    let mut by_entity: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (entity, t) in events {
        by_entity.entry(entity).or_default().push(*t);
    }
    let mut out = BTreeMap::new();
    for (entity, mut times) in by_entity {
        times.sort_unstable();
        let mut start = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] - times[i - 1] >= gap {
                let end = times[i - 1] + gap;
                out.insert(
                    (entity.to_string(), times[start] * SECOND, end * SECOND),
                    (i - start) as i64,
                );
                start = i;
            }
        }
    }
    out
}

#[tokio::test]
async fn session_puts_events_in_their_partitions_sessions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    // Two entities interleaved, out of order, with ties and a step of exactly the gap
    // (which starts a new session).
    let events: Vec<(&str, i64)> = vec![
        ("a", 0),
        ("b", 3),
        ("a", 4),
        ("a", 30),
        ("b", 9),
        ("a", 9),
        ("a", 9),
        ("b", 19),
        ("a", 40),
        ("b", -5),
        ("a", 50),
        ("b", 100),
    ];
    for (entity, t) in &events {
        store
            .append(AppendRequest::new("acme").stream(
                *entity,
                ExpectedVersion::Any,
                vec![EventData::new("tick", "{}").with_timestamp_micros(t * SECOND)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let eventql = EventQl::new(store.clone());
    let rows = eventql
        .query(
            "acme",
            "SELECT entity_id, window_start, window_end, COUNT(*) AS n \
             FROM SESSION(events, timestamp, INTERVAL '10' SECOND, entity_id) \
             GROUP BY window_start, window_end, entity_id",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = BTreeMap::new();
    for batch in &rows {
        let entity = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap_or_else(|| panic!("entity_id is not Utf8"));
        let time = |i: usize| -> &TimestampMicrosecondArray {
            batch
                .column(i)
                .as_any()
                .downcast_ref()
                .unwrap_or_else(|| panic!("column {i} is not a timestamp"))
        };
        let count: &Int64Array = batch
            .column(3)
            .as_any()
            .downcast_ref()
            .unwrap_or_else(|| panic!("count is not Int64"));
        for row in 0..batch.num_rows() {
            got.insert(
                (
                    entity.value(row).to_string(),
                    time(1).value(row),
                    time(2).value(row),
                ),
                count.value(row),
            );
        }
    }
    let expected = sessions(&events, 10);
    assert_eq!(got, expected);
    // b: -5 | 3, 9 | 19 | 100; the step 9 -> 19 is exactly the gap.
    assert!(expected.contains_key(&("b".to_string(), 19 * SECOND, 29 * SECOND)));

    // Without partition columns, sessions run across every event.
    let all = eventql
        .query(
            "acme",
            "SELECT window_start, window_end, COUNT(*) AS n \
             FROM SESSION(events, timestamp, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let merged: Vec<(&str, i64)> = events.iter().map(|(_, t)| ("", *t)).collect();
    let expected: BTreeMap<(i64, i64), i64> = sessions(&merged, 10)
        .into_iter()
        .map(|((_, s, e), n)| ((s, e), n))
        .collect();
    assert_eq!(counts(&all), expected);
}
