//! Pipelines run over the live log: created while events arrive, their results read
//! as a table over EventQL, stored with the store and started again on open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allsource::engine::{AppendRequest, Durability, EventData, EventStore, ExpectedVersion};
use allsource::operators::{Error, Kind, PipelineOptions, PipelineSpec, PipelineState, Pipelines};
use allsource::sql::EventQl;

use crate::util;

const SECOND: i64 = 1_000_000;
const BASE: i64 = 1_700_000_000 * SECOND;

const PER_KIND: &str = "SELECT window_start, window_end, event_type, COUNT(*) AS n \
    FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
    GROUP BY window_start, window_end, event_type";

/// Events `from..to`, one per second of event time, three kinds, for tenant `acme`.
async fn append(store: &EventStore, from: i64, to: i64) {
    for i in from..to {
        let event = EventData::new(format!("kind-{}", i % 3), format!(r#"{{"i":{i}}}"#))
            .with_timestamp_micros(BASE + i * SECOND);
        store
            .append(AppendRequest::new("acme").stream(
                format!("s{}", i % 5),
                ExpectedVersion::Any,
                vec![event],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn text(batches: &[arrow::array::RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Poll `sql` until it returns `expected` (as text), or fail after 20 s.
async fn eventually(eventql: &EventQl, sql: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = eventql.query("acme", sql).await.map(|b| text(&b));
        if got.as_deref().ok() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: got {got:?}, expected\n{expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spec(name: &str, sql: &str) -> PipelineSpec {
    PipelineSpec {
        tenant: "acme".into(),
        name: name.into(),
        sql: sql.into(),
        options: PipelineOptions::default(),
        ..PipelineSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_follows_the_log_and_restarts_with_the_store() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Always);
    append(&store, 0, 25).await;
    let planner = EventQl::new(store.clone());
    let pipelines = Pipelines::open(store.clone(), planner.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pipelines
        .create(spec("per_kind", PER_KIND))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append(&store, 25, 47).await;
    let eventql = planner
        .clone()
        .with_extra_tables(Arc::clone(&pipelines) as _);

    // Event times reach 46 s, so windows up to [30, 40) are complete: the pipeline's
    // table holds exactly the batch query's rows for them.
    let from_pipeline = "SELECT * FROM per_kind ORDER BY window_start, event_type";
    let batch = format!(
        "SELECT * FROM ({PER_KIND}) WHERE window_end <= TIMESTAMP '2023-11-14T22:14:00Z' \
         ORDER BY window_start, event_type"
    );
    let expected = text(
        &eventql
            .query("acme", &batch)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(expected.lines().count(), 4 * 3 + 4, "{expected}");
    eventually(&eventql, from_pipeline, &expected).await;
    let info = pipelines
        .get("acme", "per_kind")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(info.state, PipelineState::Running);
    assert_eq!(info.stats.events_in, 47);
    assert_eq!(info.watermark_micros, Some(BASE + 46 * SECOND));

    // Bad definitions are refused and change nothing.
    for (bad, says) in [
        (spec("per_kind", PER_KIND), "exists already"),
        (spec("Per Kind", PER_KIND), "lowercase identifier"),
        (spec("events", PER_KIND), "store's tables"),
        (spec("broken", "SELECT nope FROM events"), "nope"),
        (
            spec(
                "unwindowed",
                "SELECT event_type, COUNT(*) FROM TUMBLE(events, timestamp, INTERVAL '1' MINUTE) \
                 GROUP BY event_type",
            ),
            "window_start and window_end",
        ),
        (
            spec(
                "wrong_partition",
                "SELECT window_start, window_end, event_type, COUNT(*) \
                 FROM SESSION(events, timestamp, INTERVAL '1' MINUTE, entity_id) \
                 GROUP BY window_start, window_end, event_type",
            ),
            "exactly the session's partition columns (entity_id), not event_type",
        ),
        (
            spec(
                "session_filter",
                "SELECT window_start, window_end, COUNT(*) \
                 FROM SESSION(events, timestamp, INTERVAL '1' MINUTE) \
                 WHERE window_end > TIMESTAMP '2020-01-01T00:00:00Z' \
                 GROUP BY window_start, window_end",
            ),
            "filter sessions in HAVING",
        ),
        (
            spec(
                "session_rows",
                "SELECT * FROM SESSION(events, timestamp, INTERVAL '1' MINUTE)",
            ),
            "must GROUP BY window_start, window_end",
        ),
        (
            spec(
                "two_windows",
                "SELECT window_start, window_end, COUNT(*) FROM ( \
                 SELECT * FROM SESSION(events, timestamp, INTERVAL '1' MINUTE) UNION ALL \
                 SELECT * FROM TUMBLE(events, timestamp, INTERVAL '1' MINUTE)) \
                 GROUP BY window_start, window_end",
            ),
            "no other window function",
        ),
    ] {
        let err = pipelines
            .create(bad)
            .await
            .err()
            .unwrap_or_else(|| panic!("{says}: accepted"));
        assert!(err.to_string().contains(says), "{err}");
    }
    assert_eq!(pipelines.list("acme").len(), 1);

    // Closed and opened again: the pipeline starts again and recomputes its results.
    drop(eventql);
    pipelines.stop().await;
    drop(pipelines);
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Always);
    let planner = EventQl::new(store.clone());
    let pipelines = Pipelines::open(store.clone(), planner.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pipelines.list("acme").len(), 1);
    // It resumed from the checkpoint written when the store closed, at the end of
    // the log, with the results it had.
    let resumed = pipelines
        .get("acme", "per_kind")
        .and_then(|info| info.checkpoint)
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert_eq!(resumed.resumed_from, 47);
    let eventql = planner.with_extra_tables(Arc::clone(&pipelines) as _);
    let (_, results) = pipelines
        .results("acme", "per_kind")
        .unwrap_or_else(|| panic!("no results"));
    assert!(!results.is_empty());
    eventually(&eventql, from_pipeline, &expected).await;

    pipelines
        .drop_pipeline("acme", Kind::Pipeline, "per_kind")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(pipelines.list("acme").is_empty());
    assert!(eventql.query("acme", from_pipeline).await.is_err());
    assert!(matches!(
        pipelines
            .drop_pipeline("acme", Kind::Pipeline, "per_kind")
            .await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_pipeline_that_no_longer_plans_is_listed_as_failed() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Always);
    let stored = serde_json::json!([
        {"tenant": "acme", "name": "broken", "sql": "SELECT nope FROM events"},
        {"tenant": "acme", "name": "per_kind", "sql": PER_KIND},
    ]);
    store
        .table_storage()
        .put(
            &object_store::path::Path::from("pipelines/definitions.json"),
            object_store::PutPayload::from(stored.to_string().into_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pipelines = Pipelines::open(store.clone(), EventQl::new(store.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let broken = pipelines
        .get("acme", "broken")
        .unwrap_or_else(|| panic!("listed"));
    assert!(
        matches!(&broken.state, PipelineState::Failed { error } if error.contains("nope")),
        "{:?}",
        broken.state
    );
    let working = pipelines
        .get("acme", "per_kind")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(working.state, PipelineState::Running);
}

/// One stream's events at `seconds` after BASE (ingested now, so in the past).
async fn at(store: &EventStore, stream: &str, seconds: &[i64]) {
    for s in seconds {
        let event = EventData::new("tick", "{}").with_timestamp_micros(BASE + s * SECOND);
        store
            .append(AppendRequest::new("acme").stream(stream, ExpectedVersion::Any, vec![event]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The store has 32 partitions and every event goes to one stream, so 31 partitions
/// stay idle: windows close all the same. A far-future event neither stalls the
/// pipeline nor makes the events after it late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_and_far_future_events_hold_nothing_back() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    assert!(store.stats().partitions > 1);
    let planner = EventQl::new(store.clone());
    let pipelines = Pipelines::open(store.clone(), planner.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eventql = planner.with_extra_tables(Arc::clone(&pipelines) as _);
    let sql = "SELECT window_start, COUNT(*) AS n FROM TUMBLE(events, timestamp, \
               INTERVAL '10' SECOND) GROUP BY window_start, window_end";
    pipelines
        .create(spec("ticks", sql))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = "SELECT CAST(window_start AS BIGINT) / 1000000 - 1700000000 AS start, n \
                FROM ticks ORDER BY start";
    at(&store, "one", &[0, 3, 12, 15, 21]).await;
    eventually(
        &eventql,
        read,
        "+-------+---+\n\
         | start | n |\n\
         +-------+---+\n\
         | 0     | 2 |\n\
         | 10    | 2 |\n\
         +-------+---+",
    )
    .await;

    // Stamped ten years ahead of its ingestion.
    at(&store, "other", &[10 * 365 * 86_400 + 5 * 86_400 * 365]).await;
    at(&store, "one", &[22, 29, 33, 41]).await;
    eventually(
        &eventql,
        read,
        "+-------+---+\n\
         | start | n |\n\
         +-------+---+\n\
         | 0     | 2 |\n\
         | 10    | 2 |\n\
         | 20    | 3 |\n\
         | 30    | 1 |\n\
         +-------+---+",
    )
    .await;
    let info = pipelines
        .get("acme", "ticks")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(info.stats.late_events, 0);
    assert_eq!(info.stats.events_in, 10);
    assert_eq!(info.watermark_micros, Some(BASE + 41 * SECOND));
    // The far-future event's window is open, waiting for event time to get there.
    assert_eq!(info.stats.open_groups, 2);
    pipelines.stop().await;
}
