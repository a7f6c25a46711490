//! Nexmark: the online-auction streaming benchmark, as AllSource pipelines.
//!
//! Events come from the seeded generator ([`generator`]) at 1,000 events per
//! second of event time, as the store keeps them (`person`, `auction` and `bid`
//! events, their fields in the payload). Each query is an EventQL pipeline:
//!
//! - **Throughput**: the events, built up front as batches of 1,024 (the size a
//!   pipeline's source hands it), fed to the compiled pipeline and timed from the
//!   first batch to the end of the input (open windows emitted): events/s on one core,
//!   in order, and out of order (each event's time up to 2 s back, 2 s of allowed
//!   lateness, so none is late). Each query runs several times (3 with `--quick`, 5
//!   in a full run); the table gives the median and the spread.
//! - **Correctness**: a smaller run of the same events appended to a store; each
//!   pipeline's whole output must equal the same query run as batch EventQL over the
//!   store, and that batch output must equal DuckDB's (the benchmark's own SQL, its
//!   joins, windows and sessions written out) and Polars' (the same as lazy frames),
//!   both over the store's Parquet files (`engines.py`).
//!   q3 and q4 join the events with themselves (the pipeline's stream join);
//!   q4's answer is a query over its pipeline's table of closing prices, checked
//!   against the whole query as one batch query.
//!
//! Run: `cargo bench --bench nexmark` (`-- --quick` for a short run). Under
//! `cargo test` it runs the correctness checks on a small input, without timing.

#[path = "../common/mod.rs"]
mod common;
mod compare;
mod generator;
mod queries;

use std::time::Instant;

use allsource::engine::{
    Durability, EventStore, RecordedEvent, StoreConfig, event_schema, events_to_batch,
};
use allsource::operators::{Pipeline, PipelineOptions};
use allsource::sql::EventQl;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use common::Size;
use compare::{Engine, Files};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use generator::{Config, Generated, Generator};
use queries::{QUERIES, Query};
use std::sync::Arc;

const TENANT: &str = "nexmark";
const RATE: u64 = 1_000;
const BATCH: usize = 1024;
const DISORDER_MICROS: i64 = 2_000_000;

fn events(count: usize, disorder_micros: i64) -> Vec<Generated> {
    let config = Config {
        rate: RATE,
        disorder_micros,
        seed: 42,
    };
    Generator::new(config).take(count).collect()
}

/// The events as a pipeline's source hands them over: batches in log order.
fn batches(events: &[Generated]) -> Vec<RecordBatch> {
    let schema = event_schema();
    let recorded: Vec<RecordedEvent> = events
        .iter()
        .map(|g| {
            let (kind, entity, payload) = g.to_event();
            RecordedEvent {
                tenant: TENANT.into(),
                entity_id: entity.into(),
                event_type: kind.into(),
                version: 1,
                partition: 0,
                offset: g.number,
                position: g.number,
                event_id: format!("{:032}", g.number).into(),
                timestamp_micros: g.time_micros,
                ingested_at_micros: g.time_micros,
                payload: payload.to_string().into(),
                metadata: None,
            }
        })
        .collect();
    recorded
        .chunks(BATCH)
        .map(|chunk| {
            let refs: Vec<&RecordedEvent> = chunk.iter().collect();
            events_to_batch(&schema, &refs).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn options(disorder_micros: i64) -> PipelineOptions {
    PipelineOptions {
        allowed_lateness_micros: disorder_micros,
        ..PipelineOptions::default()
    }
}

/// Run `query`'s pipeline over `input` to its end: its rows (for a query over the
/// pipeline's table, that query's rows at the end), and events/s.
async fn run(
    eventql: &EventQl,
    query: &Query,
    input: &[RecordBatch],
    disorder_micros: i64,
) -> (Vec<RecordBatch>, f64) {
    let sql = query.sql;
    let mut pipeline = Pipeline::compile(eventql, TENANT, sql, options(disorder_micros))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let count: usize = input.iter().map(RecordBatch::num_rows).sum();
    let started = Instant::now();
    let mut out = Vec::new();
    for batch in input {
        out.extend(
            pipeline
                .process(batch)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        );
    }
    out.extend(
        pipeline
            .finish()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    );
    if let Some(over) = &query.over_table {
        let table = pipeline
            .current()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out = over_rows(pipeline.schema(), table, over.outer).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if query.over_table.is_none() {
        // A running pipeline counts every event, late or not.
        assert_eq!(pipeline.stats().late_events, 0, "{sql}: late events");
    }
    (out, count as f64 / seconds)
}

/// `sql` over `rows` as the table `result`.
async fn over_rows(schema: SchemaRef, rows: Vec<RecordBatch>, sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![rows]).unwrap_or_else(|e| panic!("{e}"));
    ctx.register_table("result", Arc::new(table))
        .unwrap_or_else(|e| panic!("{e}"));
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows as sorted text lines.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    arrow::util::display::array_value_to_string(c, row)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out.sort();
    out
}

/// Every query's pipeline output against batch EventQL over the same events, in
/// order and out of order. Returns the rows each query gave, in order.
async fn check(dir: &std::path::Path, count: usize) -> Vec<usize> {
    let mut rows = Vec::new();
    for (label, disorder) in [("in-order", 0), ("out-of-order", DISORDER_MICROS)] {
        let path = dir.join(label);
        let _ = std::fs::remove_dir_all(&path);
        let store = EventStore::open(StoreConfig::new(&path).with_durability(Durability::Never))
            .unwrap_or_else(|e| panic!("{e}"));
        let generated = events(count, disorder);
        generator::append(&store, TENANT, &generated).await;
        let eventql = EventQl::new(store.clone());
        let input = batches(&generated);
        // DuckDB and Polars read the same events from the store's Parquet files.
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        let glob = format!("{}/tables/data/*/*.parquet", path.display());
        let files = Files {
            glob: &glob,
            range_micros: (0, 0),
        };
        let theirs = [Engine::DuckDb, Engine::Polars].map(|e| (e, compare::rows(e, &files)));
        for query in QUERIES {
            let (out, _) = run(&eventql, query, &input, disorder).await;
            let batch = eventql
                .query(TENANT, query.batch_sql())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", query.name));
            let (streamed, expected) = (lines(&out), lines(&batch));
            assert!(!expected.is_empty(), "{}: no rows to compare", query.name);
            assert_eq!(
                streamed.len(),
                expected.len(),
                "{} ({label}): the pipeline's row count differs from the batch query's",
                query.name
            );
            if let Some(i) = (0..expected.len()).find(|&i| streamed[i] != expected[i]) {
                panic!(
                    "{} ({label}): row {i} differs: pipeline {:?}, batch {:?}",
                    query.name, streamed[i], expected[i]
                );
            }
            let ours = compare::canonical(&batch);
            for (engine, rows) in &theirs {
                let what = format!("{} ({label})", query.name);
                compare::assert_same(&what, &ours, engine.name(), &rows[query.name]);
            }
            if disorder == 0 {
                rows.push(expected.len());
            }
        }
        store.close().unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }
    rows
}

/// The median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `min–max` of sorted `values`.
fn spread(values: &[f64]) -> String {
    format!("{}–{}", rate(values[0]), rate(values[values.len() - 1]))
}

/// Events/s, in thousands or millions.
fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else {
        format!("{:.0}K", per_second / 1e3)
    }
}

fn main() {
    let size = Size::from_args();
    let runtime = common::runtime();
    runtime.block_on(async {
        generator::check_definition();
        let dir = common::data_dir().join("nexmark");
        let checked = size.pick(20_000, 100_000, 100_000);
        let started = Instant::now();
        let rows = check(&dir, checked).await;
        println!(
            "Nexmark: every query's pipeline output equals batch EventQL, and EventQL's \
             equals DuckDB's and Polars' over the same Parquet files, over {checked} events, in order \
             and out of order ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        if size == Size::Smoke {
            return;
        }
        let count = size.pick(0, 500_000, 2_000_000);
        // The planner needs a store; the pipelines are fed batches directly.
        let path = dir.join("throughput");
        let _ = std::fs::remove_dir_all(&path);
        let store = EventStore::open(StoreConfig::new(&path).with_durability(Durability::Never))
            .unwrap_or_else(|e| panic!("{e}"));
        let eventql = EventQl::new(store.clone());
        let in_order = batches(&events(count, 0));
        let out_of_order = batches(&events(count, DISORDER_MICROS));
        println!();
        println!(
            "Nexmark throughput ({count} events, {RATE} events/s of event time, batches of \
             {BATCH}, one core)"
        );
        println!();
        let runs = size.pick(1, 3, 5);
        println!("Medians of {runs} runs each (min–max), runs of one query back to back.");
        println!();
        println!(
            "| query | what | in order (events/s) | min–max | out of order (events/s) | \
             min–max | rows ({checked} events) |"
        );
        println!("|---|---|---:|---|---:|---|---:|");
        let mut figures = Vec::new();
        for (query, checked_rows) in QUERIES.iter().zip(&rows) {
            let mut ordered = Vec::with_capacity(runs);
            let mut shuffled = Vec::with_capacity(runs);
            for _ in 0..runs {
                ordered.push(run(&eventql, query, &in_order, 0).await.1);
                shuffled.push(run(&eventql, query, &out_of_order, DISORDER_MICROS).await.1);
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                query.name,
                query.what,
                rate(median(&mut ordered)),
                spread(&ordered),
                rate(median(&mut shuffled)),
                spread(&shuffled),
                checked_rows
            );
            figures.push(serde_json::json!({
                "query": query.name,
                "what": query.what,
                "in_order": ordered,
                "out_of_order": shuffled,
            }));
        }
        common::write_results(
            "nexmark",
            &serde_json::json!({"events": count, "runs": runs, "queries": figures}),
        );
        store.close().unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&path);
    });
}
