//! Macro benchmark of the event log's append path, printed as a Markdown table.
//!
//! Scenarios (in-process, ~200-byte JSON payloads, one stream per request, streams
//! drawn from 10,000 entities):
//! - one appender sending batches of 1, 100 and 1000 events, durability `never`, each
//!   request acknowledged before the next is sent; and batches of 1000 with up to 4
//!   requests submitted and not yet acknowledged;
//! - 8 concurrent appenders sending batches of 1000, durability `always`;
//! - 64 concurrent single-event appenders, durability `always`: on a new store, and on
//!   one that has flushed and reuses its dropped WAL segments (the state of a store
//!   that has been running a while; the warm-up is not timed).
//!
//! The disk's own fsync latency (4 KiB write + fdatasync, in the same directory) is
//! measured in the same run so the durable figures can be read against it: appending
//! to a file, and over blocks already written (as in a reused segment).
//!
//! Requests are built before the clock starts: the figures are the store's work, not
//! the client's.
//!
//! Run: `cargo bench --bench log_append` (`-- --quick` for a short run; any other
//! argument keeps only the scenarios whose name contains it). Under
//! `cargo test` (no `--bench` argument) it runs a tiny smoke version. Set
//! `ALLSOURCE_BENCH_DIR` to put the stores on another disk (default: `target/bench-data`).
//! The stores take the rest of their configuration from the `ALLSOURCE_*` variables a
//! server reads (`ALLSOURCE_SNAPSHOT_EVERY_EVENTS=0 ALLSOURCE_FLUSH_INTERVAL_MS=0`
//! times the log alone, without automatic snapshots and background flushes).

mod common;

use common::{Size, percentile};

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, PendingAppend, StoreConfig,
};

struct Row {
    scenario: String,
    events: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale = Size::from_args().pick(1000, 10, 1);
    let base = common::data_dir();
    let runtime = common::runtime();

    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    let fsync = common::fsync_latencies(&base, 1000 / scale as usize);
    let fsync_in_place = common::fsync_in_place_latencies(&base, 1000 / scale as usize);
    // (durability, appenders, events per request, requests in flight per appender,
    // events in all, on a store that reuses its WAL segments)
    let scenarios = [
        (Durability::Never, 1, 1, 1, 200_000, false),
        (Durability::Never, 1, 100, 1, 2_000_000, false),
        (Durability::Never, 1, 1000, 1, 2_000_000, false),
        (Durability::Never, 1, 1000, 4, 2_000_000, false),
        (Durability::Always, 8, 1000, 1, 2_000_000, false),
        (Durability::Always, 64, 1, 1, 320_000, false),
        (Durability::Always, 64, 1, 1, 320_000, true),
    ];
    let mut rows = Vec::new();
    for (durability, appenders, batch, in_flight, total, reused) in scenarios {
        let name = match (appenders, batch) {
            _ if reused => format!(
                "{appenders} appenders, single events, durability {durability}, reused WAL segments"
            ),
            (1, _) if in_flight > 1 => format!(
                "1 appender, batches of {batch}, {in_flight} requests in flight, durability {durability}"
            ),
            (1, _) => format!("1 appender, batches of {batch}, durability {durability}"),
            (_, 1) => format!("{appenders} appenders, single events, durability {durability}"),
            _ => format!("{appenders} appenders, batches of {batch}, durability {durability}"),
        };
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        // The smoke run under `cargo test` warms up with small segments.
        let warm = reused.then_some(if scale >= 1000 { 1 << 20 } else { 0 });
        rows.push(runtime.block_on(run(
            &base,
            &name,
            durability,
            (appenders, batch, in_flight),
            total / scale,
            warm,
        )));
    }

    print_table(&fsync, &fsync_in_place, &rows);
}

/// Bring `store` to where a long-running store is: three segments written, flushed
/// and dropped (kept as spares), and the active segment a reused one.
async fn reuse_segments(store: &EventStore, payload: &str) {
    let warm_up_request = |i: u64| {
        let events = (0..1000)
            .map(|_| EventData::new("order.placed", payload))
            .collect();
        AppendRequest::new("bench").stream(
            format!("warm-{}", i % 1000),
            ExpectedVersion::Any,
            events,
        )
    };
    let segment = || store.stats().wal.segment_id;
    let first = segment();
    let mut i = 0u64;
    while segment() < first + 3 {
        store
            .append(warm_up_request(i))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        i += 1;
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let flushed_in = segment();
    while segment() == flushed_in {
        store
            .append(warm_up_request(i))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        i += 1;
    }
}

/// Append `total` events from `appenders` tasks, `batch` events per request, each
/// task keeping up to `in_flight` requests submitted and not yet acknowledged.
async fn run(
    base: &Path,
    name: &str,
    durability: Durability,
    (appenders, batch, in_flight): (u64, u64, usize),
    total: u64,
    warm: Option<u64>,
) -> Row {
    let dir = tempfile::tempdir_in(base).unwrap_or_else(|e| panic!("{e}"));
    let mut config = StoreConfig::from_env(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    if let Some(segment_bytes) = warm.filter(|b| *b > 0) {
        config = config.with_wal_segment_bytes(segment_bytes);
    }
    let store =
        EventStore::open(config.with_durability(durability)).unwrap_or_else(|e| panic!("{e}"));
    let payload = payload();
    if warm.is_some() {
        reuse_segments(&store, &payload).await;
    }
    let before = store.stats();
    let per_appender = total / appenders / batch;
    let requests: Vec<Vec<AppendRequest>> = (0..appenders)
        .map(|a| {
            (0..per_appender)
                .map(|i| {
                    let entity = format!("entity-{}", (a * 7919 + i) % 10_000);
                    let events = (0..batch)
                        .map(|_| EventData::new("order.placed", payload.as_str()))
                        .collect();
                    AppendRequest::new("bench").stream(entity, ExpectedVersion::Any, events)
                })
                .collect()
        })
        .collect();
    let (latencies, seconds) = match in_flight {
        1 => common::append_all(&store, requests).await,
        _ => pipelined(&store, requests, in_flight).await,
    };
    let events = per_appender * appenders * batch;
    let stats = store.stats();
    assert_eq!(stats.events - before.events, events, "every event appended");
    let (groups, fsyncs, fsync_micros) = (
        stats.wal.groups - before.wal.groups,
        stats.wal.fsyncs - before.wal.fsyncs,
        stats.wal.fsync_micros - before.wal.fsync_micros,
    );
    eprintln!(
        "{name}: {events} events in {seconds:.2}s, {groups} group commits, {fsyncs} fsyncs taking {} µs on average",
        fsync_micros / fsyncs.max(1)
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    Row {
        scenario: name.to_string(),
        events,
        seconds,
        latencies,
    }
}

/// One appender's requests, submitted one after the other with up to `in_flight` of
/// them waiting for their acknowledgement (the oldest is awaited first).
async fn pipelined(
    store: &EventStore,
    dealt: Vec<Vec<AppendRequest>>,
    in_flight: usize,
) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let mut latencies = Vec::new();
    for requests in dealt {
        let mut waiting = VecDeque::with_capacity(in_flight);
        for request in requests {
            if waiting.len() == in_flight {
                acknowledged(waiting.pop_front(), &mut latencies).await;
            }
            let sent = Instant::now();
            let pending = store.submit(request).unwrap_or_else(|e| panic!("{e}"));
            waiting.push_back((sent, pending));
        }
        while !waiting.is_empty() {
            acknowledged(waiting.pop_front(), &mut latencies).await;
        }
    }
    (latencies, started.elapsed().as_secs_f64())
}

async fn acknowledged(oldest: Option<(Instant, PendingAppend)>, latencies: &mut Vec<Duration>) {
    if let Some((sent, pending)) = oldest {
        pending.durable().await.unwrap_or_else(|e| panic!("{e}"));
        latencies.push(sent.elapsed());
    }
}

/// A ~200-byte JSON payload.
fn payload() -> String {
    let text = r#"{"order_id":"ord-000123","customer":{"id":"cust-42","tier":"gold"},"items":[{"sku":"A-1","qty":2,"price":19.99},{"sku":"B-7","qty":1,"price":5.5}],"total":45.48,"currency":"EUR","channel":"web"}"#;
    debug_assert!((190..=210).contains(&text.len()));
    text.to_string()
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn print_table(fsync: &[Duration], fsync_in_place: &[Duration], rows: &[Row]) {
    let mut fsync = fsync.to_vec();
    fsync.sort_unstable();
    let fsync_p99 = percentile(&fsync, 0.99);
    println!(
        "Disk fsync (4 KiB write + fdatasync), {} samples: p50 {} µs, p99 {} µs",
        fsync.len(),
        micros(percentile(&fsync, 0.5)),
        micros(fsync_p99)
    );
    let mut in_place = fsync_in_place.to_vec();
    in_place.sort_unstable();
    println!(
        "Disk fsync over blocks already written (4 KiB + fdatasync), {} samples: p50 {} µs, p99 {} µs\n",
        in_place.len(),
        micros(percentile(&in_place, 0.5)),
        micros(percentile(&in_place, 0.99))
    );
    println!(
        "| scenario | events | events/s | request p50 (µs) | request p99 (µs) | p99 / disk fsync p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let mut latencies = row.latencies.clone();
        latencies.sort_unstable();
        let p99 = percentile(&latencies, 0.99);
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.2} |",
            row.scenario,
            row.events,
            row.events as f64 / row.seconds,
            micros(percentile(&latencies, 0.5)),
            micros(p99),
            p99.as_secs_f64() / fsync_p99.as_secs_f64().max(1e-9),
        );
    }
}
