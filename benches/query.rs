//! Macro benchmark of the read path: a log tiered to Parquet (plus a recent slice in
//! the buffer), read through the Rust API and through EventQL, with the same queries
//! run by DuckDB over the same Parquet files in the same run. Prints Markdown tables.
//!
//! Data: `N` events (10M by default) for N/100 customers, ~100 events each, ~200-byte
//! JSON payloads, event types `order.placed` (60%), `cart.updated` (35%) and
//! `order.paid` (5%), event times spread over the last 90 days; all flushed to Parquet,
//! then 100 more customers of 100 events each stay in the buffer.
//!
//! Run: `cargo bench --bench query` (`-- --quick` for 1M events). Needs `python3`
//! with `duckdb` and `pytz` (`pip install duckdb pytz`) for the comparison. Under `cargo test` it runs
//! a tiny smoke version without DuckDB. Set `ALLSOURCE_BENCH_DIR` to put the store on
//! another disk (default: `target/bench-data`).

mod common;

use common::{Size, percentile};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};
use allsource::sql::EventQl;

const DAY: i64 = 86_400_000_000;

/// The example query from the design notes, verbatim.
const EXAMPLE: &str = include_str!("../tests/eventql/design_example.sql");

/// (name, EventQL, DuckDB over `read_parquet(?)`).
const QUERIES: [(&str, &str, &str); 3] = [
    (
        "scan filtered by event_type",
        "SELECT COUNT(*), SUM(payload->>'amount') FROM events WHERE event_type = 'order.paid'",
        "SELECT COUNT(*), SUM(CAST(json_extract_string(payload, '$.amount') AS DOUBLE)) FROM read_parquet(?) WHERE tenant = 'acme' AND event_type = 'order.paid'",
    ),
    (
        "GROUP BY day x event_type",
        "SELECT DATE_TRUNC('day', timestamp) AS day, event_type, COUNT(*) FROM events GROUP BY 1, 2",
        "SELECT DATE_TRUNC('day', timestamp) AS day, event_type, COUNT(*) FROM read_parquet(?) WHERE tenant = 'acme' GROUP BY 1, 2",
    ),
    (
        "the design example",
        EXAMPLE,
        "SELECT entity_id, COUNT(*) AS order_count, SUM(CAST(json_extract_string(payload, '$.amount') AS DOUBLE)) AS total_spent, DATE_TRUNC('day', timestamp) AS day FROM read_parquet(?) WHERE tenant = 'acme' AND event_type = 'order.placed' AND timestamp >= NOW() - INTERVAL '30 days' GROUP BY entity_id, DATE_TRUNC('day', timestamp) HAVING COUNT(*) > 5 ORDER BY total_spent DESC LIMIT 100",
    ),
];

const DUCKDB: &str = r#"
import duckdb, json, sys, time
glob = sys.argv[1]
queries = json.loads(sys.argv[2])
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.execute("SET enable_progress_bar=false")
out = []
for q in queries:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        con.execute(q, [glob]).fetchall()
        times.append(time.perf_counter() - t)
    times.sort()
    out.append(times[1])
print(json.dumps(out))
"#;

fn main() {
    let size = Size::from_args();
    let events: u64 = size.pick(20_000, 1_000_000, 10_000_000);
    common::runtime().block_on(run(&common::data_dir(), events, size != Size::Smoke));
}

async fn run(base: &Path, events: u64, with_duckdb: bool) {
    let dir = tempfile::tempdir_in(base).unwrap_or_else(|e| panic!("{e}"));
    // ALLSOURCE_* variables apply (e.g. ALLSOURCE_PARQUET_PAGE_ROWS), so layouts can be
    // compared without a rebuild.
    let config = StoreConfig::from_env(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_durability(Durability::Never)
        .with_flush_interval_ms(0);
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let customers = (events / 100).max(1);
    let started = Instant::now();
    load(&store, customers, now, "customer").await;
    eprintln!(
        "appended {} events in {:.1}s",
        store.stats().events,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "flushed {} events to {} Parquet files ({} MB) in {:.1}s",
        report.events,
        report.files,
        report.bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    load(&store, 100, now, "recent").await;

    let eventql = EventQl::new(store.clone());
    let mut seed = 42u64;
    let mut pick = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let rounds = if with_duckdb { 1000 } else { 20 };
    let mut latency_rows = Vec::new();
    for (name, prefix, count) in [
        ("Rust API read_stream, from Parquet", "customer", customers),
        ("Rust API read_stream, from the buffer", "recent", 100),
    ] {
        let mut times = Vec::new();
        for _ in 0..rounds {
            let entity = format!("{prefix}-{}", pick(count));
            let t = Instant::now();
            let read = store
                .read_stream("acme", &entity, 1, usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            times.push(t.elapsed());
            assert!(read.len() >= 90, "{entity}: {} events", read.len());
        }
        latency_rows.push((name.to_string(), times));
    }
    for (name, sql) in [
        (
            "EventQL stream read, from Parquet",
            "SELECT version, payload FROM events WHERE entity_id = '{}' ORDER BY version",
        ),
        (
            "EventQL entity_state, from Parquet",
            "SELECT entity_state('{}')",
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..rounds / 3 {
            let sql = sql.replace("{}", &format!("customer-{}", pick(customers)));
            let t = Instant::now();
            eventql
                .query("acme", &sql)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            times.push(t.elapsed());
        }
        latency_rows.push((name.to_string(), times));
    }
    println!(
        "\n{} events in Parquet ({} files, {} MB) + 10,000 in the buffer\n",
        report.events,
        report.files,
        report.bytes / 1_000_000
    );
    println!("| read | samples | p50 (µs) | p99 (µs) |");
    println!("|---|---:|---:|---:|");
    for (name, mut times) in latency_rows {
        times.sort_unstable();
        println!(
            "| {name} | {} | {} | {} |",
            times.len(),
            micros(percentile(&times, 0.5)),
            micros(percentile(&times, 0.99))
        );
    }

    let mut ours = Vec::new();
    for (_, sql, _) in QUERIES {
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            eventql
                .query("acme", sql)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            times.push(t.elapsed());
        }
        times.sort_unstable();
        ours.push(times[1]);
    }
    let theirs = if with_duckdb {
        duckdb(&dir.path().join("tables/data/*/*.parquet"))
    } else {
        vec![None; QUERIES.len()]
    };
    println!("\n| query | AllSource (ms) | DuckDB (ms) | AllSource / DuckDB |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _, _)) in QUERIES.iter().enumerate() {
        let ours_ms = ours[i].as_secs_f64() * 1e3;
        match theirs[i] {
            Some(duck) => println!(
                "| {name} | {ours_ms:.1} | {:.1} | {:.2} |",
                duck * 1e3,
                ours[i].as_secs_f64() / duck
            ),
            None => println!("| {name} | {ours_ms:.1} | - | - |"),
        }
    }
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

/// `customers` streams of ~100 events each, appended in batches of 1000 events.
async fn load(store: &EventStore, customers: u64, now: i64, prefix: &str) {
    let mut seed = 7u64 ^ customers;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut request = AppendRequest::new("acme");
    let mut in_request = 0;
    for round in 0..100u64 {
        for customer in 0..customers {
            let roll = next() % 100;
            let kind = match roll {
                0..60 => "order.placed",
                60..95 => "cart.updated",
                _ => "order.paid",
            };
            let at = now - (next() % (90 * DAY as u64)) as i64;
            let payload = format!(
                r#"{{"order_id":"ord-{round:04}-{customer}","amount":{}.{:02},"currency":"EUR","customer":{{"id":"{prefix}-{customer}","tier":"gold"}},"items":[{{"sku":"A-1","qty":2}}],"channel":"web"}}"#,
                next() % 500,
                next() % 100
            );
            request = request.stream(
                format!("{prefix}-{customer}"),
                ExpectedVersion::Any,
                vec![EventData::new(kind, payload).with_timestamp_micros(at)],
            );
            in_request += 1;
            if in_request == 1000 {
                let full = std::mem::replace(&mut request, AppendRequest::new("acme"));
                store.append(full).await.unwrap_or_else(|e| panic!("{e}"));
                in_request = 0;
            }
        }
    }
    if in_request > 0 {
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// DuckDB's median of three runs of each query, in seconds.
fn duckdb(glob: &Path) -> Vec<Option<f64>> {
    let queries: Vec<&str> = QUERIES.iter().map(|(_, _, q)| *q).collect();
    let queries = serde_json::to_string(&queries).unwrap_or_default();
    let output = Command::new("python3")
        .args(["-c", DUCKDB, &glob.display().to_string(), &queries])
        .output()
        .unwrap_or_else(|e| panic!("running python3 with duckdb: {e}"));
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let times: Vec<f64> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    times.into_iter().map(Some).collect()
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}
