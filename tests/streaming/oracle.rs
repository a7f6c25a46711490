//! The oracle for windowed pipelines: once the watermark has passed, every window's
//! result equals the same query run as batch EventQL over the same events, minus the
//! events the pipeline reported late. Random streams with bounded disorder (and some
//! events beyond the bound), random batch cuts, several keys, tumbling, hopping and
//! session windows, and totals per key without windows.

use allsource::engine::{
    AppendRequest, Durability, EventData, ExpectedVersion, RecordedEvent, event_schema,
    events_to_batch,
};
use allsource::operators::{LateData, Pipeline, PipelineOptions};
use allsource::sql::EventQl;
use arrow::array::{Array, UInt64Array};
use proptest::prelude::*;

use super::lines;
use crate::util;

const SECOND: i64 = 1_000_000;

/// One generated event: time, key, value.
#[derive(Debug, Clone)]
struct Generated {
    time: i64,
    kind: u8,
    entity: u8,
    value: i64,
}

fn recorded(position: u64, e: &Generated) -> RecordedEvent {
    RecordedEvent {
        tenant: "acme".into(),
        entity_id: format!("e{}", e.entity).into(),
        event_type: format!("kind-{}", e.kind).into(),
        version: 1,
        partition: 0,
        offset: position,
        position,
        event_id: format!("00000000-0000-7000-8000-{position:012}").into(),
        timestamp_micros: e.time,
        // Ingested as it happened, so no event time is capped as future skew.
        ingested_at_micros: e.time,
        payload: format!(r#"{{"v":{}}}"#, e.value).into(),
        metadata: None,
    }
}

/// Run `sql` as a pipeline over `events` cut at `cuts`, then as a batch query over
/// the events it did not report late; both results, and how many were late.
async fn both(
    sql: &str,
    events: &[Generated],
    cuts: &[usize],
    lateness: i64,
) -> (Vec<String>, Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    let eventql = EventQl::new(store.clone());
    let options = PipelineOptions {
        allowed_lateness_micros: lateness,
        late_data: LateData::Keep,
        ..PipelineOptions::default()
    };
    let mut pipeline = Pipeline::compile(&eventql, "acme", sql, options)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let recorded: Vec<RecordedEvent> = events
        .iter()
        .enumerate()
        .map(|(i, e)| recorded(i as u64, e))
        .collect();
    let schema = event_schema();
    let mut streamed = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (events.len() + 1)).collect();
    bounds.push(events.len());
    bounds.sort_unstable();
    for end in bounds {
        let chunk: Vec<&RecordedEvent> = recorded[start..end].iter().collect();
        start = end;
        let batch = events_to_batch(&schema, &chunk).unwrap_or_else(|e| panic!("{e}"));
        streamed.extend(
            pipeline
                .process(&batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    streamed.extend(pipeline.finish().await.unwrap_or_else(|e| panic!("{e}")));
    if pipeline.is_running() {
        // Totals per key: the table is the current row of each key.
        streamed = pipeline.current().await.unwrap_or_else(|e| panic!("{e}"));
    }

    let mut late = vec![false; events.len()];
    for batch in pipeline.take_late_events() {
        let positions = batch
            .column_by_name("position")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .unwrap_or_else(|| panic!("late events without positions"));
        for p in positions.values() {
            late[*p as usize] = true;
        }
    }
    let late_count = late.iter().filter(|l| **l).count();
    assert_eq!(pipeline.stats().late_events, late_count as u64);
    for (e, is_late) in events.iter().zip(&late) {
        if *is_late {
            continue;
        }
        let event = EventData::new(
            format!("kind-{}", e.kind),
            format!(r#"{{"v":{}}}"#, e.value),
        )
        .with_timestamp_micros(e.time);
        store
            .append(AppendRequest::new("acme").stream(
                format!("e{}", e.entity),
                ExpectedVersion::Any,
                vec![event],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let batch = eventql
        .query("acme", sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (lines(&streamed), lines(&batch), late_count)
}

/// Events whose times move forward by up to 3 s each, jittered by up to `disorder`
/// back, with one in ten moved back further (often late).
fn stream(disorder: i64) -> impl Strategy<Value = Vec<Generated>> {
    prop::collection::vec(
        (
            0..3 * SECOND,
            0..disorder.max(1),
            0u8..10,
            0u8..3,
            0u8..4,
            -50i64..50,
        ),
        1..120,
    )
    .prop_map(move |steps| {
        let mut now = 1_700_000_000 * SECOND;
        steps
            .into_iter()
            .map(|(step, jitter, far, kind, entity, value)| {
                now += step;
                let back = if far == 0 { jitter * 4 } else { jitter };
                Generated {
                    time: now - back,
                    kind,
                    entity,
                    value,
                }
            })
            .collect()
    })
}

const TUMBLE: &str = "SELECT window_start, window_end, event_type, COUNT(*) AS n, \
     SUM(payload->>'v') AS total, MIN(payload->>'v') AS low, COUNT(DISTINCT entity_id) AS entities \
     FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
     GROUP BY window_start, window_end, event_type";

const HOP: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS n, \
     AVG(payload->>'v') AS mean, MAX(payload->>'v') AS high \
     FROM HOP(events, timestamp, INTERVAL '5' SECOND, INTERVAL '15' SECOND) \
     WHERE event_type <> 'kind-2' \
     GROUP BY window_start, window_end, entity_id HAVING COUNT(*) > 1";

/// Sessions per entity, with a filter: the events it drops still join sessions, as in
/// the batch view.
const SESSION: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS n, \
     SUM(payload->>'v') AS total, COUNT(DISTINCT event_type) AS kinds, MAX(payload->>'v') AS high \
     FROM SESSION(events, timestamp, INTERVAL '8' SECOND, entity_id) \
     WHERE event_type <> 'kind-2' \
     GROUP BY window_start, window_end, entity_id";

/// One session across all events.
const SESSION_ALL: &str = "SELECT window_start, window_end, COUNT(*) AS n, AVG(payload->>'v') AS mean \
     FROM SESSION(events, timestamp, INTERVAL '3' SECOND) \
     GROUP BY window_start, window_end HAVING COUNT(*) > 1";

/// Totals per key without windows: no event is late, the table equals the batch
/// `GROUP BY` over every event.
const TOTALS: &str = "SELECT entity_id, event_type, COUNT(*) AS n, SUM(payload->>'v') AS total, \
     MIN(payload->>'v') AS low, COUNT(DISTINCT payload->>'v') AS values \
     FROM events WHERE event_type <> 'kind-2' GROUP BY entity_id, event_type";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_windows_equal_the_batch_query(
        events in stream(4 * SECOND),
        cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let (streamed, batch, _) = runtime().block_on(both(TUMBLE, &events, &cuts, 2 * SECOND));
        prop_assert_eq!(streamed, batch);
    }

    #[test]
    fn hopping_windows_equal_the_batch_query(
        events in stream(3 * SECOND),
        cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let (streamed, batch, _) = runtime().block_on(both(HOP, &events, &cuts, SECOND));
        prop_assert_eq!(streamed, batch);
    }

    #[test]
    fn running_totals_equal_the_batch_query(
        events in stream(4 * SECOND),
        cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let (streamed, batch, late) = runtime().block_on(both(TOTALS, &events, &cuts, 0));
        prop_assert_eq!(late, 0);
        prop_assert_eq!(streamed, batch);
    }

    #[test]
    fn session_windows_equal_the_batch_query(
        events in stream(4 * SECOND),
        cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let (streamed, batch, _) = runtime().block_on(both(SESSION, &events, &cuts, 2 * SECOND));
        prop_assert_eq!(streamed, batch);
        let (streamed, batch, _) = runtime().block_on(both(SESSION_ALL, &events, &cuts, SECOND));
        prop_assert_eq!(streamed, batch);
    }
}

/// The generator does produce late events, and the oracle then differs from a batch
/// query over all events: the comparison above is not vacuous.
#[test]
fn late_events_are_left_out_and_reported() {
    let mut now = 1_700_000_000 * SECOND;
    let mut events = Vec::new();
    for i in 0..40 {
        now += SECOND;
        // Every eighth event arrives 30 s behind: late for a 2 s bound.
        let time = if i % 8 == 7 { now - 30 * SECOND } else { now };
        events.push(Generated {
            time,
            kind: (i % 3) as u8,
            entity: (i % 4) as u8,
            value: i,
        });
    }
    let (streamed, batch, late) = runtime().block_on(both(TUMBLE, &events, &[7, 19], 2 * SECOND));
    assert_eq!(late, 5);
    assert_eq!(streamed, batch);
    assert!(!streamed.is_empty());
}
