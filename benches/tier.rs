//! Macro benchmark of tiering: what the background flusher spends per event when it
//! writes the Arrow buffer to Parquet and when compaction merges the flushed files.
//! On two cores this work competes with the appenders, so its cost per event bounds
//! sustained ingest. Prints a Markdown table.
//!
//! The store has the default layout (32 partitions, 256-row pages, 65,536-row row
//! groups) with the background flusher off. Each round appends `flush_min_events`
//! events (the default 262,144: what the flusher takes at once under load) and
//! flushes them, timed; after eight rounds every partition has eight like-sized files
//! and one compaction merges them, timed. Two shapes of load: the Flight benchmark's
//! (100,000 entities, so most streams get one event per row group) and one of
//! 1,000 entities (long runs of one stream in each row group).
//!
//! Run: `cargo bench --bench tier` (three runs of each shape, the median reported;
//! `-- --quick` for one). Under
//! `cargo test` it runs a tiny smoke version. `ALLSOURCE_BENCH_DIR` puts the store on
//! another disk (default: `target/bench-data`).

mod common;

use common::Size;

use std::path::Path;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};

/// Events per appended request.
const REQUEST_EVENTS: usize = 10_000;

fn main() {
    let size = Size::from_args();
    let (flush_events, rounds) = size.pick((4_096, 8), (262_144, 8), (262_144, 8));
    let repeats = size.pick(1, 1, 3);
    let base = common::data_dir();
    let runtime = common::runtime();
    println!("\n## Tiering: flush and compaction cost per event\n");
    println!(
        "{rounds} flushes of {flush_events} events each, then one compaction merging them \
         (32 partitions, 256-row pages, zstd); median of {repeats} run(s).\n"
    );
    println!(
        "| load | flush: events/s | flush: µs/event | compaction: events/s | compaction: µs/event | Parquet bytes/event (compacted) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut figures = serde_json::Map::new();
    for (name, entities) in [("100,000 entities", 100_000), ("1,000 entities", 1_000)] {
        let mut runs: Vec<Run> = (0..repeats)
            .map(|_| runtime.block_on(run(&base, entities, flush_events, rounds)))
            .collect();
        runs.sort_by_key(|r| r.flush + r.compaction);
        let median = &runs[runs.len() / 2];
        let events = (flush_events * rounds) as f64;
        let rate = |d: Duration| events / d.as_secs_f64();
        let micros = |d: Duration| d.as_secs_f64() * 1e6 / events;
        println!(
            "| {name} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} |",
            rate(median.flush),
            micros(median.flush),
            rate(median.compaction),
            micros(median.compaction),
            median.compacted_bytes as f64 / events
        );
        figures.insert(
            name.into(),
            serde_json::json!({
                "flush_events_per_s": rate(median.flush),
                "compaction_events_per_s": rate(median.compaction),
                "compacted_bytes_per_event": median.compacted_bytes as f64 / events,
            }),
        );
    }
    common::write_results("tier", &serde_json::Value::Object(figures));
}

struct Run {
    flush: Duration,
    compaction: Duration,
    compacted_bytes: u64,
}

async fn run(base: &Path, entities: usize, flush_events: usize, rounds: usize) -> Run {
    let dir = tempfile::tempdir_in(base).unwrap_or_else(|e| panic!("{e}"));
    let mut config = StoreConfig::new(dir.path()).with_durability(Durability::Never);
    config.flush_interval_ms = 0;
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    let mut flush = Duration::ZERO;
    let mut n = 0usize;
    for _ in 0..rounds {
        let end = n + flush_events;
        while n < end {
            let count = REQUEST_EVENTS.min(end - n);
            append(&store, entities, n, count).await;
            n += count;
        }
        let started = Instant::now();
        let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        flush += started.elapsed();
        assert_eq!(
            report.events as usize, flush_events,
            "each flush takes one round"
        );
    }
    let started = Instant::now();
    let report = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    let compaction = started.elapsed();
    assert_eq!(
        report.files_merged as usize,
        32 * rounds,
        "every partition's files are merged"
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    Run {
        flush,
        compaction,
        compacted_bytes: report.bytes_written,
    }
}

/// Append events `first..first + count` of the load: event `n` goes to entity
/// `n % entities`, with the Flight benchmark's payload.
async fn append(store: &EventStore, entities: usize, first: usize, count: usize) {
    let mut request = AppendRequest::new("default");
    for n in first..first + count {
        let payload = format!(
            r#"{{"order_id": "o-{n}", "amount": {}.{:02}, "currency": "EUR", "items": {}, "channel": "web"}}"#,
            n % 500,
            n % 100,
            n % 7 + 1
        );
        let event_type = if n % 20 == 0 {
            "order.paid"
        } else {
            "order.placed"
        };
        request = request.stream(
            format!("customer-{}", n % entities),
            ExpectedVersion::Any,
            vec![EventData::new(event_type, payload)],
        );
    }
    store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
