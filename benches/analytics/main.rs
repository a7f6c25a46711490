//! Batch analytics side by side: the Nexmark queries' batch forms and a set of
//! event-analytics queries, run by AllSource (EventQL), DuckDB and Polars over the
//! same Parquet files, in the same run.
//!
//! The Nexmark generator's events (in order, 1,000 events per second of event time)
//! are appended to a store, flushed to Parquet and the store reopened, so every
//! engine reads the same files and nothing else. Each query's result is materialised
//! in memory (Arrow batches for AllSource, an Arrow table for DuckDB, a DataFrame for
//! Polars); every run reads the files again (the OS page cache is warm for all three).
//! Each engine runs every query several times (3 with `--quick`, 5 in a full run),
//! round after round; the table gives the median and the spread, and the ratios of
//! the medians, with their geometric mean.
//!
//! Before timing, a small store's events are checked: every query's rows must be the
//! same in all three engines.
//!
//! Run: `cargo bench --bench analytics` (`-- --quick` for a short run). Needs
//! `python3` with `duckdb` and `polars`. Under `cargo test` it runs the check only.
//! `ALLSOURCE_BENCH_EXPLAIN=<query>,…` prints those queries' plans with their metrics.
//! `ALLSOURCE_BENCH_KEEP=1` keeps the timed store; `ALLSOURCE_BENCH_ONLY=<query>,…`
//! then times only those queries, in AllSource only, over the kept store when it
//! holds as many events (no check, no other engine: a quick loop while working on
//! a plan), with their plans too when `ALLSOURCE_BENCH_EXPLAIN` is set.
//!
//! Queries may hold up to 4 GiB each (`query_memory_bytes`; the default of 512 MiB
//! is too little for q11's sort at 5M events), where DuckDB and Polars may take most
//! of the machine's memory.

#[path = "../common/mod.rs"]
mod common;
#[path = "../nexmark/compare.rs"]
mod compare;
#[allow(dead_code)] // the generator's own check is the streaming benchmark's
#[path = "../nexmark/generator.rs"]
mod generator;
#[allow(dead_code)] // the pipelines' part of the queries
#[path = "../nexmark/queries.rs"]
mod queries;

use std::path::Path;
use std::time::Instant;

use allsource::engine::{Durability, EventStore, StoreConfig};
use allsource::sql::{EventQl, QueryLimits};
use common::Size;
use compare::{Engine, Files};
use generator::{BASE_MICROS, Config, Generator};
use serde_json::json;

const TENANT: &str = "nexmark";
const RATE: u64 = 1_000;

/// The engine as the benchmark runs it: 4 GiB of memory per query.
fn eventql(store: &EventStore) -> EventQl {
    EventQl::new(store.clone()).with_limits(QueryLimits {
        memory_bytes: 4 << 30,
        ..QueryLimits::default()
    })
}

/// An event-analytics query: its name (as `engines.py` knows it), what it asks, and
/// its EventQL; `{from}` and `{to}` stand for the time range's bounds.
struct Analytics {
    name: &'static str,
    what: &'static str,
    sql: &'static str,
}

const ANALYTICS: &[Analytics] = &[
    Analytics {
        name: "types",
        what: "events per type",
        sql: "SELECT event_type, COUNT(*) FROM events GROUP BY event_type",
    },
    Analytics {
        name: "per_minute",
        what: "bids and average price per minute and channel",
        sql: "SELECT date_trunc('minute', timestamp), payload->>'channel', COUNT(*), \
                AVG(CAST(payload->>'price' AS BIGINT)) \
              FROM events WHERE event_type = 'bid' \
              GROUP BY date_trunc('minute', timestamp), payload->>'channel'",
    },
    Analytics {
        name: "top_bidders",
        what: "the 10 bidders with the most bids",
        sql: "SELECT entity_id, COUNT(*) AS n FROM events WHERE event_type = 'bid' \
              GROUP BY entity_id ORDER BY n DESC, entity_id LIMIT 10",
    },
    Analytics {
        name: "distinct_bidders",
        what: "distinct bidders per auction",
        sql: "SELECT payload->>'auction', COUNT(DISTINCT payload->>'bidder') \
              FROM events WHERE event_type = 'bid' GROUP BY payload->>'auction'",
    },
    Analytics {
        name: "latest_bid",
        what: "each auction's latest bid price",
        sql: "SELECT payload->>'auction', \
                last_value(CAST(payload->>'price' AS BIGINT) ORDER BY timestamp) \
              FROM events WHERE event_type = 'bid' GROUP BY payload->>'auction'",
    },
    Analytics {
        name: "time_range",
        what: "bids and their total in a time range (a quarter of the events)",
        sql: "SELECT COUNT(*), SUM(CAST(payload->>'price' AS BIGINT)) FROM events \
              WHERE event_type = 'bid' \
                AND timestamp >= TIMESTAMP '{from}' AND timestamp < TIMESTAMP '{to}'",
    },
    Analytics {
        name: "bidder_activity",
        what: "first and last bid and bids per bidder",
        sql: "SELECT entity_id, MIN(timestamp), MAX(timestamp), COUNT(*) \
              FROM events WHERE event_type = 'bid' GROUP BY entity_id",
    },
];

/// A query as every engine runs it.
struct Batch {
    name: &'static str,
    what: &'static str,
    sql: String,
}

/// The time range the `time_range` query covers: the second quarter of `count`
/// events' event time, µs since the epoch.
fn range_micros(count: usize) -> (i64, i64) {
    let step = 1_000_000 / RATE as i64;
    let quarter = count as i64 / 4;
    (
        BASE_MICROS + quarter * step,
        BASE_MICROS + 2 * quarter * step,
    )
}

/// µs since the epoch as an SQL timestamp literal, UTC.
fn timestamp_text(micros: i64) -> String {
    let at = chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_else(|| panic!("{micros} µs is out of range"));
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Every query, Nexmark's batch forms first, for a run over `count` events.
fn batch_queries(count: usize) -> Vec<Batch> {
    let (from, to) = range_micros(count);
    let nexmark = queries::QUERIES.iter().map(|q| Batch {
        name: q.name,
        what: q.what,
        sql: q.batch_sql().to_string(),
    });
    let analytics = ANALYTICS.iter().map(|a| Batch {
        name: a.name,
        what: a.what,
        sql: a
            .sql
            .replace("{from}", &timestamp_text(from))
            .replace("{to}", &timestamp_text(to)),
    });
    nexmark.chain(analytics).collect()
}

/// A store at `path` holding `count` generated events, all of them in Parquet: the
/// store is flushed and reopened, so nothing is read from its memory.
async fn store_of(path: &Path, count: usize) -> EventStore {
    let _ = std::fs::remove_dir_all(path);
    let config = store_config(path);
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    let events: Vec<_> = Generator::new(Config {
        rate: RATE,
        disorder_micros: 0,
        seed: 42,
    })
    .take(count)
    .collect();
    generator::append(&store, TENANT, &events).await;
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    // The other engines read every file under the table directory: none may be a
    // file compaction replaced. With no grace, each pass deletes those the last one
    // replaced.
    for _ in 0..4 {
        if store.stats().tier.retired_files == 0 {
            break;
        }
        store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        store.stats().tier.retired_files,
        0,
        "replaced files are still on disk"
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    EventStore::open(config).unwrap_or_else(|e| panic!("{e}"))
}

/// The benchmark's store configuration: no durability (the figures are of reads),
/// and files replaced by compaction deleted at the next pass.
fn store_config(path: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(path).with_durability(Durability::Never);
    config.retired_file_grace_ms = 0;
    config
}

fn glob(path: &Path) -> String {
    format!("{}/tables/data/*/*.parquet", path.display())
}

/// Every query's rows in AllSource against DuckDB's and Polars', over `count` events.
async fn check(dir: &Path, count: usize) {
    let path = dir.join("check");
    let store = store_of(&path, count).await;
    let eventql = eventql(&store);
    let glob = glob(&path);
    let files = Files {
        glob: &glob,
        range_micros: range_micros(count),
    };
    let theirs = [Engine::DuckDb, Engine::Polars].map(|e| (e, compare::rows(e, &files)));
    // One timed round too, so the timing path is exercised wherever the check runs.
    let timed = [Engine::DuckDb, Engine::Polars].map(|e| (e, compare::time(e, &files, 1)));
    for query in batch_queries(count) {
        let ours = eventql
            .query(TENANT, &query.sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", query.name));
        let ours = compare::canonical(&ours);
        assert!(!ours.is_empty(), "{}: no rows to compare", query.name);
        for (engine, rows) in &theirs {
            compare::assert_same(query.name, &ours, engine.name(), &rows[query.name]);
        }
        for (engine, timed) in &timed {
            assert_eq!(
                timed.rows[query.name],
                ours.len(),
                "{}: {}'s timed run gives another row count",
                query.name,
                engine.name()
            );
        }
    }
    store.close().unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let _ = std::fs::remove_dir_all(&path);
}

/// Print the plan of the query named `name` as it ran, with its metrics.
async fn explain(eventql: &EventQl, queries: &[Batch], name: &str) {
    let query = queries
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no query named {name}"));
    let sql = format!("EXPLAIN ANALYZE {}", query.sql);
    let out = eventql
        .query(TENANT, &sql)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = arrow::util::pretty::pretty_format_batches(&out).unwrap_or_else(|e| panic!("{e}"));
    println!("{text}");
}

/// Time the queries `names` (comma-separated) in AllSource only, over the store at
/// `path` when it holds `count` events (built otherwise, and kept).
async fn time_only(path: &Path, count: usize, runs: usize, names: &str) {
    let kept = match EventStore::open(store_config(path)) {
        Ok(store) if store.stats().events == count as u64 => Some(store),
        Ok(store) => {
            store.close().unwrap_or_else(|e| panic!("{e}"));
            None
        }
        Err(_) => None,
    };
    let store = match kept {
        Some(store) => store,
        None => store_of(path, count).await,
    };
    let eventql = eventql(&store);
    let queries = batch_queries(count);
    for name in names.split(',') {
        let query = queries
            .iter()
            .find(|q| q.name == name)
            .unwrap_or_else(|| panic!("no query named {name}"));
        let mut seconds = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            eventql
                .query(TENANT, &query.sql)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            seconds.push(started.elapsed().as_secs_f64());
        }
        println!(
            "{name}: {} ms ({})",
            millis(median(&seconds)),
            spread(&seconds)
        );
        if std::env::var_os("ALLSOURCE_BENCH_EXPLAIN").is_some() {
            explain(&eventql, &queries, name).await;
        }
    }
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn millis(seconds: f64) -> String {
    let ms = seconds * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn spread(values: &[f64]) -> String {
    let lowest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = values.iter().copied().fold(0.0, f64::max);
    format!("{}–{}", millis(lowest), millis(highest))
}

fn geometric_mean(ratios: &[f64]) -> f64 {
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

fn main() {
    let size = Size::from_args();
    let runtime = common::runtime();
    runtime.block_on(async {
        let dir = common::data_dir().join("analytics");
        let checked = 20_000;
        let started = Instant::now();
        check(&dir, checked).await;
        println!(
            "Analytics: every query gives the same rows in AllSource, DuckDB and Polars over \
             the same Parquet files ({checked} events, {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        if size == Size::Smoke {
            return;
        }
        let count = size.pick(0, 1_000_000, 5_000_000);
        let runs = size.pick(1, 3, 5);
        let path = dir.join("timed");
        if let Ok(names) = std::env::var("ALLSOURCE_BENCH_ONLY") {
            return time_only(&path, count, runs, &names).await;
        }
        let started = Instant::now();
        let store = store_of(&path, count).await;
        println!(
            "{count} events appended, flushed to Parquet and the store reopened ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        let eventql = eventql(&store);
        let queries = batch_queries(count);
        let mut ours: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
        let mut our_rows = vec![0; queries.len()];
        for _ in 0..runs {
            for (i, query) in queries.iter().enumerate() {
                let started = Instant::now();
                let out = eventql
                    .query(TENANT, &query.sql)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", query.name));
                ours[i].push(started.elapsed().as_secs_f64());
                our_rows[i] = out.iter().map(|b| b.num_rows()).sum::<usize>();
            }
        }
        if let Ok(names) = std::env::var("ALLSOURCE_BENCH_EXPLAIN") {
            for name in names.split(',') {
                explain(&eventql, &queries, name).await;
            }
        }
        let glob = glob(&path);
        let files = Files {
            glob: &glob,
            range_micros: range_micros(count),
        };
        let duckdb = compare::time(Engine::DuckDb, &files, runs);
        let polars = compare::time(Engine::Polars, &files, runs);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        drop(store);

        println!();
        println!(
            "Batch analytics over {count} Nexmark events in Parquet (one tenant), \
             DuckDB {} and Polars {}: medians of {runs} runs (min–max), ms",
            duckdb.version, polars.version
        );
        println!();
        println!(
            "| query | what | rows | AllSource | DuckDB | Polars | min–max AllSource / DuckDB / \
             Polars | AllSource / DuckDB | AllSource / Polars |"
        );
        println!("|---|---|---:|---:|---:|---:|---|---:|---:|");
        let (mut to_duckdb, mut to_polars) = (Vec::new(), Vec::new());
        let mut figures = Vec::new();
        for (i, query) in queries.iter().enumerate() {
            let theirs = [&duckdb, &polars].map(|t| &t.seconds[query.name]);
            for (engine, timed) in [("DuckDB", &duckdb), ("Polars", &polars)] {
                assert_eq!(
                    timed.rows[query.name], our_rows[i],
                    "{}: {engine} gives another row count than AllSource",
                    query.name
                );
            }
            let ratios = [
                median(&ours[i]) / median(theirs[0]),
                median(&ours[i]) / median(theirs[1]),
            ];
            to_duckdb.push(ratios[0]);
            to_polars.push(ratios[1]);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} / {} / {} | {:.2} | {:.2} |",
                query.name,
                query.what,
                our_rows[i],
                millis(median(&ours[i])),
                millis(median(theirs[0])),
                millis(median(theirs[1])),
                spread(&ours[i]),
                spread(theirs[0]),
                spread(theirs[1]),
                ratios[0],
                ratios[1]
            );
            figures.push(json!({
                "query": query.name,
                "what": query.what,
                "rows": our_rows[i],
                "seconds": {"AllSource": ours[i], "DuckDB": theirs[0], "Polars": theirs[1]},
            }));
        }
        let (gm_duckdb, gm_polars) = (geometric_mean(&to_duckdb), geometric_mean(&to_polars));
        println!("| geometric mean | | | | | | | **{gm_duckdb:.2}** | **{gm_polars:.2}** |");
        common::write_results(
            "analytics",
            &json!({
                "events": count,
                "runs": runs,
                "versions": {"DuckDB": duckdb.version, "Polars": polars.version},
                "queries": figures,
                "geometric_mean": {"DuckDB": gm_duckdb, "Polars": gm_polars},
            }),
        );
        if std::env::var_os("ALLSOURCE_BENCH_KEEP").is_some() {
            println!("The store is kept in {}", path.display());
        } else {
            let _ = std::fs::remove_dir_all(&path);
        }
    });
}
