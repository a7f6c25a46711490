//! Macro benchmark of streaming pipelines, printed as Markdown tables.
//!
//! **Throughput.** Events are built up front as batches of 1,024 (the size a
//! pipeline's subscription hands it) and fed to a compiled [`Pipeline`], timed from
//! the first batch to the last: the operators' own rate, events/s, on one core (a
//! pipeline is one task). Queries:
//! - tumbling: `COUNT(*)`, `SUM` over 10 s windows, by 100 keys;
//! - hopping: the same over 10 s windows every 2 s (each event in 5 windows);
//! - session: per-key sessions closing after a 5 s gap.
//!
//! Each runs in-order (event time rises with the log, 1 ms apart) and out of order
//! (each event's time jittered up to 2 s back, with 2 s of allowed lateness, so
//! none is late).
//!
//! **End-to-end latency.** A store (durability `never`, so the commit is not an
//! fsync) runs a tumbling pipeline of 1 s windows through the pipeline registry. An
//! appender adds 20 events in each second of event time, then one in the next second
//! that moves the watermark past the window's end. The latency is from that append's
//! call to the closed window's row being in the pipeline's table, as queries read it
//! (polled in a loop that yields to the runtime). Out of order, each second's events are shuffled and the
//! pipeline allows 500 ms of lateness.
//!
//! **Projections.** Totals per key (`COUNT`, `SUM`) and the built-in
//! `entity_snapshot` (`json_merge_agg`), fed as above, events/s. Then, through the
//! registry over a store of real appended events: a replay of `entity_snapshot` from
//! the start of the log (events/s as the replay reports it, and the wall time to the
//! swap), and the latency of reading one key's row while the projection is idle.
//!
//! Run: `cargo bench --bench pipeline` (`-- --quick` for a short run). Under
//! `cargo test` it runs a tiny smoke version.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, RecordedEvent, StoreConfig,
    event_schema, events_to_batch,
};
use allsource::operators::{Kind, Pipeline, PipelineOptions, PipelineSpec, Pipelines};
use allsource::sql::EventQl;
use arrow::array::RecordBatch;
use common::{Size, percentile};

const BATCH: usize = 1024;
const KEYS: u64 = 100;
const BASE_MICROS: i64 = 1_700_000_000_000_000;

const TUMBLE: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS n, \
    SUM(payload->>'v') AS total FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
    GROUP BY window_start, window_end, entity_id";
const HOP: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS n, \
    SUM(payload->>'v') AS total \
    FROM HOP(events, timestamp, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
    GROUP BY window_start, window_end, entity_id";
const TOTALS: &str = "SELECT entity_id, COUNT(*) AS n, SUM(payload->>'v') AS total \
    FROM events GROUP BY entity_id";
const SESSION: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS n, \
    SUM(payload->>'v') AS total \
    FROM SESSION(events, timestamp, INTERVAL '5' SECOND, entity_id) \
    GROUP BY window_start, window_end, entity_id";

/// `count` events 1 ms apart over [`KEYS`] entities (half of them in turn, for 10 s
/// each), in batches; with `jitter`, each event's time moves back by up to 2 s (a
/// fixed pseudo-random sequence).
fn input(count: usize, jitter: bool) -> Vec<RecordBatch> {
    let schema = event_schema();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    // Half the keys are active in each 10 s of event time, so sessions close.
    let half = KEYS / 2;
    let events: Vec<RecordedEvent> = (0..count as u64)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let back = if jitter {
                (state % 2_000_000) as i64
            } else {
                0
            };
            let time = BASE_MICROS + i as i64 * 1_000 - back;
            RecordedEvent {
                tenant: "bench".into(),
                entity_id: format!("key-{}", i % half + half * (i / 10_000 % 2)).into(),
                event_type: "tick".into(),
                version: i / KEYS + 1,
                partition: 0,
                offset: i,
                position: i,
                event_id: format!("{i:032}").into(),
                timestamp_micros: time,
                ingested_at_micros: BASE_MICROS + i as i64 * 1_000,
                payload: format!(r#"{{"v":{}}}"#, i % 97).into(),
                metadata: None,
            }
        })
        .collect();
    events
        .chunks(BATCH)
        .map(|chunk| {
            let refs: Vec<&RecordedEvent> = chunk.iter().collect();
            events_to_batch(&schema, &refs).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

/// Events/s of `sql` over `batches`, and the rows it emitted.
async fn throughput(
    eventql: &EventQl,
    sql: &str,
    batches: &[RecordBatch],
    lateness: i64,
) -> (f64, usize) {
    let options = PipelineOptions {
        allowed_lateness_micros: lateness,
        ..PipelineOptions::default()
    };
    let mut pipeline = Pipeline::compile(eventql, "bench", sql, options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let started = Instant::now();
    let mut rows = 0;
    for batch in batches {
        let out = pipeline
            .process(batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        rows += out.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(pipeline.stats().late_events, 0, "{sql}");
    (events as f64 / seconds, rows)
}

/// Append-to-visible latencies of closed windows, `windows` of them. Out of order,
/// each second's events come shuffled, the pipeline allows 500 ms of lateness, and
/// the event that closes a window is 500 ms into the next second.
async fn latency(
    store: &EventStore,
    eventql: &EventQl,
    windows: usize,
    out_of_order: bool,
) -> Vec<Duration> {
    let pipelines = Pipelines::open(store.clone(), eventql.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = if out_of_order { "shuffled" } else { "in_order" };
    let lateness = if out_of_order { 500_000 } else { 0 };
    let spec = PipelineSpec {
        tenant: "bench".into(),
        name: name.into(),
        sql: "SELECT window_start, COUNT(*) AS n FROM TUMBLE(events, timestamp, \
              INTERVAL '1' SECOND) WHERE entity_id = 'clock' GROUP BY window_start, window_end"
            .into(),
        options: PipelineOptions {
            allowed_lateness_micros: lateness,
            ..PipelineOptions::default()
        },
        ..PipelineSpec::default()
    };
    pipelines
        .create(spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = |pipelines: &Arc<Pipelines>| -> usize {
        pipelines.results("bench", name).map_or(0, |(_, batches)| {
            batches.iter().map(RecordBatch::num_rows).sum()
        })
    };
    // The second run's event time starts well after the first's.
    let origin: i64 = if out_of_order { 10_000_000 } else { 0 };
    let mut samples = Vec::with_capacity(windows);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for window in 0..windows as i64 {
        // 20 events inside the second (after the 500 ms the closing event of the
        // previous window took, when out of order).
        let mut offsets: Vec<i64> = (0..20).map(|i| 500 + i * 20).collect();
        if out_of_order {
            for i in (1..offsets.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                offsets.swap(i, (state % (i as u64 + 1)) as usize);
            }
        }
        for offset in offsets {
            append(store, origin + window * 1_000 + offset).await;
        }
        let closing = origin + (window + 1) * 1_000 + if out_of_order { 500 } else { 0 };
        let started = Instant::now();
        append(store, closing).await;
        while rows(&pipelines) < window as usize + 1 {
            tokio::task::yield_now().await;
        }
        samples.push(started.elapsed());
    }
    pipelines
        .drop_pipeline("bench", Kind::Pipeline, name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    samples.sort();
    samples
}

async fn append(store: &EventStore, millis: i64) {
    let event =
        EventData::new("tick", r#"{"v":1}"#).with_timestamp_micros(BASE_MICROS + millis * 1_000);
    store
        .append(AppendRequest::new("bench").stream("clock", ExpectedVersion::Any, vec![event]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Append `count` events over 10,000 entities (tenant `replay`), replay
/// `entity_snapshot` over them, and time key lookups.
async fn replay(store: &EventStore, eventql: &EventQl, count: usize) {
    const ENTITIES: usize = 10_000;
    const PER_STREAM: usize = 10;
    let mut appended = 0;
    while appended < count {
        let mut request = AppendRequest::new("replay");
        for s in 0..100 {
            let entity = format!("user-{}", (appended / PER_STREAM + s) % ENTITIES);
            let events = (0..PER_STREAM)
                .map(|k| {
                    let n = appended + s * PER_STREAM + k;
                    EventData::new(
                        "user.updated",
                        format!(r#"{{"n":{n},"tier":"t{}"}}"#, n % 7),
                    )
                })
                .collect();
            request = request.stream(entity, ExpectedVersion::Any, events);
        }
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        appended += 100 * PER_STREAM;
    }
    let pipelines = Pipelines::open(store.clone(), eventql.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = PipelineSpec {
        tenant: "replay".into(),
        name: "entity_snapshot".into(),
        sql: allsource::operators::projection::built_in("entity_snapshot")
            .unwrap_or_else(|| panic!("built in"))
            .into(),
        kind: Kind::Projection,
        ..PipelineSpec::default()
    };
    pipelines
        .create(spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = store.head_position();
    while pipelines
        .get("replay", "entity_snapshot")
        .is_none_or(|p| p.position < head)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let replay = pipelines
        .replay(
            "replay",
            "entity_snapshot",
            allsource::operators::ReplayFrom::Position(0),
            10_000,
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let done = loop {
        let info = pipelines
            .replay_info("replay", &replay.id)
            .unwrap_or_else(|| panic!("listed"));
        if info.status.is_finished() {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    assert_eq!(
        done.status,
        allsource::operators::ReplayStatus::Completed,
        "{done:?}"
    );
    let mut lookups = Vec::with_capacity(1000);
    for i in 0..1000 {
        let key = format!("user-{}", (i * 7919) % ENTITIES.min(count / PER_STREAM));
        let started = Instant::now();
        let (_, row) = pipelines
            .lookup("replay", "entity_snapshot", &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        lookups.push(started.elapsed());
        assert!(row.is_some(), "{key}");
    }
    lookups.sort();
    println!(
        "\nReplay of entity_snapshot ({count} events, {ENTITIES} entities, batches of 10,000)\n"
    );
    println!("| replay events/s | replay wall time | lookup p50 | lookup p99 |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.0} | {:.2} s | {:.3} ms | {:.3} ms |",
        done.events_per_second,
        wall.as_secs_f64(),
        percentile(&lookups, 0.5).as_secs_f64() * 1e3,
        percentile(&lookups, 0.99).as_secs_f64() * 1e3,
    );
    pipelines.stop().await;
}

fn main() {
    let size = Size::from_args();
    let events = size.pick(32 * BATCH, 200 * BATCH, 1_000 * BATCH);
    let windows = size.pick(5, 100, 300);
    let runtime = common::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir_in(common::data_dir()).unwrap_or_else(|e| panic!("{e}"));
        let mut config = StoreConfig::new(dir.path());
        config.durability = Durability::Never;
        let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
        let eventql = EventQl::new(store.clone());

        println!("Pipeline throughput ({events} events, batches of {BATCH}, {KEYS} keys)\n");
        println!("| query | input | events/s | rows out |");
        println!("|---|---|---:|---:|");
        for (name, sql) in [
            ("tumbling 10 s, COUNT + SUM", TUMBLE),
            ("hopping 10 s / 2 s, COUNT + SUM", HOP),
            ("session 5 s gap, COUNT + SUM", SESSION),
        ] {
            for (order, jitter, lateness) in [
                ("in order", false, 0),
                ("out of order (2 s)", true, 2_000_000),
            ] {
                let batches = input(events, jitter);
                let (rate, rows) = throughput(&eventql, sql, &batches, lateness).await;
                assert!(rows > 0, "{name}: no rows");
                println!("| {name} | {order} | {rate:.0} | {rows} |");
            }
        }

        println!("\nProjections ({events} events, batches of {BATCH}, {KEYS} keys)\n");
        println!("| projection | events/s | rows out |");
        println!("|---|---:|---:|");
        let snapshot = allsource::operators::projection::built_in("entity_snapshot")
            .unwrap_or_else(|| panic!("built in"));
        for (name, sql) in [
            ("totals per key, COUNT + SUM", TOTALS),
            ("entity_snapshot (json_merge_agg)", snapshot),
        ] {
            let batches = input(events, false);
            let (rate, rows) = throughput(&eventql, sql, &batches, 0).await;
            assert!(rows > 0, "{name}: no rows");
            println!("| {name} | {rate:.0} | {rows} |");
        }
        replay(&store, &eventql, size.pick(20_000, 200_000, 1_000_000)).await;

        println!("\nAppend to result visible ({windows} windows of 1 s, durability never)\n");
        println!("| input | p50 | p99 | max |");
        println!("|---|---:|---:|---:|");
        for (order, shuffled) in [("in order", false), ("out of order (500 ms)", true)] {
            let samples = latency(&store, &eventql, windows, shuffled).await;
            println!(
                "| {order} | {:.3} ms | {:.3} ms | {:.3} ms |",
                percentile(&samples, 0.5).as_secs_f64() * 1e3,
                percentile(&samples, 0.99).as_secs_f64() * 1e3,
                samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            );
        }
        store.close().unwrap_or_else(|e| panic!("{e}"));
    });
}
